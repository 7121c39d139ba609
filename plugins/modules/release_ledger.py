#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_ledger
short_description: Record a release's status in the host's release ledger
version_added: 0.1.0
description:
  - Adds a release to, or updates a release in, the per-host, per-app ledger
    C(<ledger_dir>/<app>/ledger.json), the single source of truth for which release is live, which are
    good rollback targets, which failed and why, and which were rolled back.
  - Setting a release C(live) demotes the release that was live to O(previous_status).
  - The ledger stays bounded. Every write keeps each release whose files are on the host (C(live), C(good),
    C(rolled_back)), the newest O(keep_failed) C(failed) ones and the newest O(keep_pruned) C(pruned) ones,
    and drops the older ones. The live release and the release recorded are always kept.
  - C(pruned) is the status of a release whose directory was removed to keep the host's releases bounded
    (M(shipit.deploy.systemd_release) and M(shipit.deploy.compose_prune) record it as they remove it). No
    rollback picks it.
  - The ledger is replaced atomically (temp file, fsync, rename), so an interrupted run leaves either the
    old or the new ledger.
  - Read it with M(shipit.deploy.release_ledger_info).
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
  - shipit.deploy.attributes.ledger
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  release_id:
    description: Id of the release to record (a safe name, no C(/) or C(..)).
    type: str
    required: true
  status:
    description: New status of the release.
    type: str
    required: true
    choices: [live, good, failed, rolled_back, pruned]
  previous_status:
    description: Status given to the release that was live when O(status=live) makes another release live.
    type: str
    default: good
    choices: [good, rolled_back, failed]
  version:
    description: Version of the release. Required when the release is not in the ledger yet.
    type: str
  checksum:
    description: Checksum of the artifact the release was made from (for example C(sha256:...)).
    type: str
  reason:
    description: Why the release has this status (for example the health check that failed).
    type: str
  info:
    description: Further facts to keep with the release (who deployed it, git sha, image digests, backup id).
    type: dict
  keep_failed:
    description: How many C(failed) releases the ledger keeps, the newest; older ones are dropped from it.
    type: int
    default: 10
  keep_pruned:
    description: How many C(pruned) releases the ledger keeps, the newest; older ones are dropped from it.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Record the new release as live
  shipit.deploy.release_ledger:
    app: pulse
    release_id: "20261125T180000Z"
    version: 1.1.0
    checksum: "sha256:6f1c..."
    status: live
    info:
      deployed_by: ci
      git_sha: 3f2a9c1

- name: Mark a release failed after its health check failed
  shipit.deploy.release_ledger:
    app: pulse
    release_id: "20261125T181500Z"
    version: 1.2.0
    status: failed
    reason: "health check http GET http://127.0.0.1:8080/health failed: HTTP 503"

- name: Make an older release live again after a manual rollback
  shipit.deploy.release_ledger:
    app: pulse
    release_id: "20261125T170000Z"
    status: live
    previous_status: rolled_back
"""

RETURN = r"""
release:
  description: The release's ledger entry after the change (or as it would be, in check mode).
  returned: success
  type: dict
  sample:
    release_id: "20261125T180000Z"
    version: 1.1.0
    status: live
    checksum: "sha256:6f1c..."
    created_at: "2026-11-25T18:00:03Z"
    updated_at: "2026-11-25T18:00:09Z"
live:
  description: The release that is live after the change, or null.
  returned: success
  type: dict
dropped:
  description: Release ids dropped from the ledger by O(keep_failed) and O(keep_pruned) (or that would be, in check
    mode).
  returned: success
  type: list
  elements: str
  sample: ["20261101T090000Z"]
path:
  description: Path of the ledger file.
  returned: success
  type: str
  sample: /var/lib/shipit/pulse/ledger.json
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import release_ledger as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
