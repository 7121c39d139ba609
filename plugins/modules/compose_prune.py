#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_prune
short_description: Remove old Compose releases and the images no kept release uses
version_added: 0.2.0
description:
  - Keeps the newest O(keep) release directories of an application under C(<root>/<app>/releases/) plus every
    release in O(protect) (the live release and the rollback target), and removes the others.
  - Each release directory holds C(images.json), the image IDs that release pins. An image is removed only when
    no kept release of this application and no release of another application under O(root) references it;
    images are pruned by reference, never by age.
  - An image a container still uses (running or stopped) is never removed; the release that references it is
    kept too, so a later run tries again, and the image is reported in RV(in_use).
  - An image is removed by its tags (removing the last tag deletes it), or by its ID when it has none.
  - With O(ledger_dir), the releases removed are recorded C(pruned) in the application's release ledger in the
    same call, so no rollback picks a release whose files are gone; releases the ledger has as C(good) or
    C(rolled_back) whose directory is missing are recorded C(pruned) too.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  root:
    description: Parent directory of the application directories.
    type: path
    required: true
  app:
    description: Name of the application (its directory under O(root)).
    type: str
    required: true
  keep:
    description: Number of newest releases to keep (at least 1); protected releases are kept besides.
    type: int
    required: true
  protect:
    description: Release ids that are never removed, whatever their age.
    type: list
    elements: str
    default: []
  images_file:
    description: Name of the file, in each release directory, that maps services to image IDs.
    type: str
    default: images.json
  docker_cli:
    description: Docker CLI to run.
    type: path
    default: docker
  ledger_dir:
    description:
      - Directory holding the release ledgers (one sub-directory per application, as for
        M(shipit.deploy.release_ledger)). The ledger of O(app) there records the releases removed as C(pruned).
      - When it is not given the ledger is not touched.
    type: path
"""

EXAMPLES = r"""
- name: Keep the newest three releases of pulse and the images they use
  shipit.deploy.compose_prune:
    root: /srv
    app: pulse
    keep: 3
    protect:
      - "20261125T180000Z"  # live
      - "20261125T170000Z"  # rollback target
    ledger_dir: /var/lib/shipit
"""

RETURN = r"""
removed_releases:
  description: Release directories removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: ["20261120T090000Z"]
kept_releases:
  description: Release directories kept.
  returned: success
  type: list
  elements: str
  sample: ["20261125T170000Z", "20261125T180000Z"]
removed_images:
  description: Image IDs removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
kept_images:
  description: Image IDs the kept releases use.
  returned: success
  type: list
  elements: str
in_use:
  description: Image IDs that would have been removed but a container uses; their releases were kept.
  returned: success
  type: list
  elements: str
pruned_in_ledger:
  description: Releases recorded C(pruned) in the ledger (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: ["20261120T090000Z"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import compose_prune as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
