#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_ledger_info
short_description: Read the host's release ledger of an application
version_added: 0.1.0
description:
  - Returns every release recorded for the application on the host, the live one, the default rollback
    target (the newest C(good) release) and, when asked, one release looked up by version or release id.
  - A release recorded C(pruned) had its files removed from the host. It is never the default rollback target,
    and looking it up with O(release) fails, naming it, since it cannot be rolled back to.
  - Written by M(shipit.deploy.release_ledger).
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
  - shipit.deploy.attributes.ledger
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  release:
    description:
      - A version or release id to look up; the newest matching entry is returned as RV(selected).
      - By version, a release that did not fail is preferred. When the match is C(pruned) the module fails.
    type: str
"""

EXAMPLES = r"""
- name: Read the ledger
  shipit.deploy.release_ledger_info:
    app: pulse
  register: ledger

- name: Look up the release to roll back to
  shipit.deploy.release_ledger_info:
    app: pulse
    release: 1.0.0
  register: ledger
"""

RETURN = r"""
releases:
  description: Every release in deploy order, oldest first.
  returned: always
  type: list
  elements: dict
live:
  description: The live release, or null when nothing was deployed yet.
  returned: always
  type: dict
previous_good:
  description: The newest release with status C(good) (the default rollback target, never a C(pruned) one), or null.
  returned: always
  type: dict
selected:
  description: The newest release whose version or release id equals O(release), or null.
  returned: when O(release) is given
  type: dict
path:
  description: Path of the ledger file.
  returned: always
  type: str
exists:
  description: Whether the ledger file exists.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            ledger_dir=dict(type="path", default="/var/lib/shipit"),
            release=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        path = _ledger.ledger_path(module.params["ledger_dir"], module.params["app"])
        data = _ledger.load(path, module.params["app"])
    except _ledger.LedgerError as exc:
        module.fail_json(msg=f"reading the ledger of {module.params['app']}: {exc}")
    result = dict(
        changed=False,
        path=path,
        exists=os.path.exists(path),
        releases=data["releases"],
        live=_ledger.live(data),
        previous_good=_ledger.previous_good(data),
    )
    if module.params["release"]:
        try:
            result["selected"] = _ledger.find(data, module.params["release"])
        except _ledger.PrunedError as exc:
            module.fail_json(msg=f"looking up release {module.params['release']} of {module.params['app']}: {exc}: "
                                 "nothing was changed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
