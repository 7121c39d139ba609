#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit_log
short_description: Append an entry to the host's shipit audit log
version_added: 0.1.0
description:
  - Appends one entry (who, what, when, result) to the host's append-only audit log, by default
    C(/var/lib/shipit/audit.log), one JSON object per line, for every deploy, rollback, restore and unlock
    of every application on the host.
  - The log is opened in append mode and each entry is written with one write under an exclusive flock
    and fsynced, so entries of concurrent runs never interleave and nothing already written is changed.
  - M(shipit.deploy.deploy_lock) appends its own entries for broken stale locks and forced unlocks.
  - With O(state=read) the module appends nothing and returns the newest entries.
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
  path:
    description: The audit log file (created with mode 0640 in a directory created with mode 0750).
    type: path
    default: /var/lib/shipit/audit.log
  state:
    description: V(present) appends the entry; V(read) returns the newest entries and appends nothing.
    type: str
    default: present
    choices: [present, read]
  event:
    description: What happened (V(deploy), V(rollback), V(restore), V(unlock), V(recover), ...). Required to append.
    type: str
  result:
    description: How it ended (V(started), V(succeeded), V(failed), V(rolled_back), ...). Required to append.
    type: str
  app:
    description: The application. With O(state=read), only its entries are returned.
    type: str
  who:
    description: Who ran it.
    type: str
  version:
    description: Version concerned.
    type: str
  release_id:
    description: Release id concerned.
    type: str
  run:
    description: Id of the run (the deploy lock's token).
    type: str
  ci_url:
    description: URL of the CI run, if any.
    type: str
  controller:
    description: Machine the run was started from.
    type: str
  summary:
    description:
      - A sentence saying what happened (the failure reason, for instance), the entry's C(message).
      - Not named C(message), which Ansible reserves for itself.
    type: str
  details:
    description: Any further facts, kept as given.
    type: dict
  last:
    description: With O(state=read), how many of the newest entries to return.
    type: int
    default: 20
"""

EXAMPLES = r"""
- name: Record the outcome of the deploy
  shipit.deploy.audit_log:
    event: deploy
    result: rolled_back
    app: pulse
    who: alice
    version: 1.2.0
    release_id: 20261125T180000Z
    summary: "health check http GET http://127.0.0.1:8080/health failed: HTTP 503"

- name: Read the last 10 entries of pulse
  shipit.deploy.audit_log:
    state: read
    app: pulse
    last: 10
  register: audit
"""

RETURN = r"""
entry:
  description: The entry appended (or that would be, in check mode).
  returned: when O(state=present)
  type: dict
  sample:
    time: "2026-11-25T18:00:09Z"
    event: deploy
    result: succeeded
    app: pulse
    who: alice
    version: 1.2.0
    target: web1
entries:
  description: The newest entries, oldest first.
  returned: when O(state=read)
  type: list
  elements: dict
path:
  description: Path of the audit log.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _lock

FIELDS = ("app", "who", "version", "release_id", "run", "ci_url", "controller")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/shipit/audit.log"),
            state=dict(type="str", default="present", choices=["present", "read"]),
            event=dict(type="str"),
            result=dict(type="str"),
            app=dict(type="str"),
            who=dict(type="str"),
            version=dict(type="str"),
            release_id=dict(type="str"),
            run=dict(type="str"),
            ci_url=dict(type="str"),
            controller=dict(type="str"),
            summary=dict(type="str"),
            details=dict(type="dict"),
            last=dict(type="int", default=20),
        ),
        required_if=[("state", "present", ["event", "result"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "read":
        if p["last"] < 1:
            module.fail_json(msg=f"reading the audit log {p['path']}: last must be at least 1, got {p['last']}")
        module.exit_json(changed=False, path=p["path"], entries=_lock.read_audit(p["path"], p["app"], p["last"]))
    fields = {k: p[k] for k in FIELDS}
    fields["message"] = p["summary"]
    if p["details"]:
        fields["details"] = p["details"]
    entry = _lock.audit_entry(p["event"], p["result"], fields)
    if not module.check_mode:
        try:
            _lock.append_audit(p["path"], entry)
        except OSError as exc:
            module.fail_json(msg=f"appending {p['event']} {p['result']} to the audit log {p['path']}: {exc}")
    module.exit_json(changed=True, entry=entry, path=p["path"])


if __name__ == "__main__":
    main()
