#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_backup_info
short_description: List an application's database backups, pick one and verify its checksum
version_added: 0.2.0
description:
  - Reads the manifests in C(<backup_dir>/<app>/) written by M(shipit.deploy.db_backup), newest first.
  - >-
    Picks one backup by id or C(latest) (O(backup)), or the newest backup taken while a given release was live
    (O(taken_under): the data a rollback to that release needs).
  - With O(verify), checks the picked backup's size and sha256 against its manifest and fails, with a message
    that says which and why, when it is missing, truncated or corrupted. Nothing is ever changed.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  app:
    description: Name of the application.
    type: str
    required: true
  backup_dir:
    description: Directory holding one directory of backups per application.
    type: path
    default: /var/backups/shipit
  backup:
    description: A backup id or C(latest). A backup id that does not exist fails the task.
    type: str
  taken_under:
    description: A release id; picks the newest backup taken while that release was live (null when none).
    type: str
  verify:
    description: Check the picked backup's size and sha256 against its manifest; fail when they differ.
    type: bool
    default: false
seealso:
  - module: shipit.deploy.db_backup
  - module: shipit.deploy.db_restore
"""

EXAMPLES = r"""
- name: Verify the newest backup of pulse
  shipit.deploy.db_backup_info:
    app: pulse
    backup: latest
    verify: true
  register: backup

- name: Find the backup that holds the data of the release to roll back to
  shipit.deploy.db_backup_info:
    app: pulse
    taken_under: "20261120T090000Z"
"""

RETURN = r"""
backups:
  description: Every backup's manifest, newest first (with its C(path) and C(manifest_path)).
  returned: always
  type: list
  elements: dict
selected:
  description: The manifest of the picked backup, or null.
  returned: always
  type: dict
verified:
  description: Whether the picked backup's size and sha256 were checked and match its manifest.
  returned: always
  type: bool
invalid:
  description: Manifests that could not be read, with the reason.
  returned: always
  type: list
  elements: str
directory:
  description: The application's backup directory.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _backup


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            backup_dir=dict(type="path", default="/var/backups/shipit"),
            backup=dict(type="str"),
            taken_under=dict(type="str"),
            verify=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("backup", "taken_under")],
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, backups=[], selected=None, verified=False, invalid=[])
    try:
        directory = _backup.app_dir(p["backup_dir"], p["app"])
        result["directory"] = directory
        manifests, invalid = _backup.list_manifests(directory)
        result["backups"] = [_backup.public(m) for m in manifests]
        result["invalid"] = [f"{path}: {why}" for path, why in invalid]
        selected = None
        if p["backup"]:
            if p["backup"] != "latest":
                _backup.check_name("backup id", p["backup"])
            selected = _backup.select(manifests, p["backup"])
            if selected is None:
                known = ", ".join(m["backup_id"] for m in manifests[:10]) or "none"
                raise _backup.BackupError(f"there is no backup {p['backup']} in {directory} (newest: {known})")
        elif p["taken_under"]:
            selected = _backup.taken_under(manifests, p["taken_under"])
        if selected is not None:
            result["selected"] = _backup.public(selected)
            if p["verify"]:
                _backup.verify_file(selected)
                result["verified"] = True
    except (_backup.BackupError, OSError) as exc:
        module.fail_json(msg=f"reading the backups of {p['app']}: {exc}; nothing was changed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
