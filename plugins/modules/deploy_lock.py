#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take, renew and release an application's deploy lock on a host
version_added: 0.1.0
description:
  - One deploy, rollback or restore of an application at a time on a host. The lock is the file
    C(<lock_dir>/<app>/deploy.lock), created atomically with link(2) of a fully written temp file, so of
    runs racing for it exactly one wins and the lock is never seen half-written (never check-then-write).
  - The lock holds who took it, the CI run URL if any, the version, the release id, the operation, the
    controller the run started from, the host and the times it was taken and expires.
  - A lock held by another run makes the module fail with C(locked by <who> since <when> (<version>)),
    after waiting at most O(wait) seconds for it to be released. A lock past its expiry (its run was killed,
    so nobody renews it) is stale and broken, and the break is written to the audit log.
  - On the controller, the action plugin records which C(ansible-playbook) process holds the lock. A run
    started on the same controller that finds the lock of a process that is gone (killed) breaks it at once
    instead of waiting for its expiry. Runs from other machines (CI runners) rely on the expiry.
  - Beside the lock, O(stage) keeps an "in progress" record (operation, release, version, stage,
    started_at, holder) and renews the lock. The record is removed when the holder releases the lock
    with O(done=true); a run that was killed leaves it, and the next run that takes the lock gets it back
    as RV(interrupted) so it can finish or undo that work first.
  - O(state=absent) releases the lock if this run holds it; O(force=true) releases whoever holds it (a forced
    unlock, written to the audit log) but never removes another run's in-progress record.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  check_mode:
    support: full
    details:
      - In check mode the lock is read and a lock held by another run is reported exactly as in a real run,
        but nothing is written.
  diff_mode:
    support: none
options:
  app:
    description: Name of the application; its lock lives in a directory of that name.
    type: str
    required: true
  lock_dir:
    description: Directory holding one sub-directory per application (the same as the release ledger's).
    type: path
    default: /var/lib/shipit
  read_ledger:
    description:
      - When the lock is taken (O(state=present) without O(stage)), also read the application's release ledger
        in O(lock_dir) and return it as RV(ledger). Read under the lock, what the run decides from (what is
        live, the rollback target) cannot change under it.
      - A ledger that cannot be read gives the lock back and fails with C(nothing was changed).
    type: bool
    default: false
  state:
    description:
      - V(present) takes the lock, or renews it when this O(token) already holds it.
      - V(absent) releases it.
      - V(query) only reads the lock and the in-progress record (RV(lock), RV(interrupted)); it changes nothing.
    type: str
    default: present
    choices: [present, absent, query]
  token:
    description:
      - Id of the run taking or releasing the lock (the same on every host and every call of one run).
      - Required with O(state=present), and with O(state=absent) unless O(force=true).
    type: str
  who:
    description: Who runs the deploy (a user name, C(ci), ...). Shown to whoever finds the lock held.
    type: str
  ci_url:
    description: URL of the CI run holding the lock, if any.
    type: str
  version:
    description: Version being deployed (or rolled back to).
    type: str
  release_id:
    description: Release id of the run.
    type: str
  operation:
    description: What the run does (V(deploy), V(rollback), V(restore), ...).
    type: str
    default: deploy
  controller:
    description: Name of the machine the run was started from.
    type: str
  ttl:
    description:
      - Seconds the lock stays valid after it is taken or renewed; past that it is stale and the next run breaks it.
      - Each O(stage) update renews it. Choose it longer than the longest stage (migrations, backups).
    type: int
    default: 1800
  wait:
    description: Seconds to wait for a lock held by another run to be released (bounded), polling.
    type: float
    default: 0
  fail_when_held:
    description: Fail when another run holds the lock; with V(false), return RV(acquired=false) and the holder.
    type: bool
    default: true
  stage:
    description:
      - Record this stage of the run in the in-progress record and renew the lock, which this O(token) must
        already hold (taken by an earlier call without O(stage)). A lock that is no longer this run's (it
        expired and another run took it) fails the call, so the run stops instead of going on unguarded.
      - Refused while an interrupted run's record is in place, unless O(replace_interrupted=true).
    type: str
  replace_interrupted:
    description: Let O(stage) replace the in-progress record of an interrupted run the caller has dealt with.
    type: bool
    default: false
  force:
    description: With O(state=absent), release the lock whoever holds it (a forced unlock).
    type: bool
    default: false
  done:
    description:
      - With O(state=absent), also remove this run's in-progress record (its operation is over).
      - V(false) keeps it, so the next run recovers (for example after a rollback that failed).
    type: bool
    default: true
  audit_log:
    description:
      - >-
        The host's audit log (see M(shipit.deploy.audit_log)). Appended to: the start of the operation when the
        lock is taken (result C(started)), its end when the lock is released with O(result), broken stale locks
        and forced unlocks.
      - Default C(<lock_dir>/audit.log). An empty string writes none.
    type: path
  reason:
    description: Why the lock is forced open; kept in the audit log.
    type: str
  result:
    description:
      - With O(state=absent), how the operation ended (V(deployed), V(rolled_back), ...); written to the audit
        log with O(summary) and O(details) when the lock is released. Without it nothing is written.
    type: str
  summary:
    description:
      - With O(result), a sentence saying what happened (the failure reason, for instance), the audit entry's
        C(message). Not named C(message), which Ansible reserves for itself.
    type: str
  details:
    description: With O(result), further facts for the audit log (final version, duration, ...).
    type: dict
  holder_info:
    description:
      - Further facts about the holder kept in the lock. The action plugin adds C(controller_process), the
        identity of the C(ansible-playbook) process (host, boot id, pid namespace, pid and start time).
    type: dict
  break_token:
    description:
      - With O(state=present), break the lock if the run of this token holds it, whatever its expiry, because
        the caller knows that run is dead. The break is written to the audit log (result C(dead)).
      - Set by the action plugin when the holder's C(ansible-playbook) process ran on this very controller and
        is gone (killed, or a cancelled CI job on the same machine), so the next run need not wait for the
        lock to expire.
    type: str
"""

EXAMPLES = r"""
- name: Take the deploy lock (wait up to 2 minutes for another run)
  shipit.deploy.deploy_lock:
    app: pulse
    token: "{{ shipit_run_id }}"
    who: "{{ shipit_deployed_by }}"
    ci_url: "{{ shipit_ci_url }}"
    version: 1.2.0
    release_id: 20261125T180000Z
    wait: 120
  register: lock

- name: Say what an interrupted run left behind
  ansible.builtin.debug:
    msg: "{{ lock.interrupted }}"
  when: lock.interrupted

- name: Record the stage of the run (renews the lock)
  shipit.deploy.deploy_lock:
    app: pulse
    token: "{{ shipit_run_id }}"
    stage: switch
    version: 1.2.0
    release_id: 20261125T180000Z

- name: Release the lock, the deploy is over, and say how it ended in the audit log
  shipit.deploy.deploy_lock:
    app: pulse
    token: "{{ shipit_run_id }}"
    state: absent
    result: deployed
    version: 1.2.0

- name: Force the lock open (audited)
  shipit.deploy.deploy_lock:
    app: pulse
    state: absent
    force: true
    who: alice
    reason: the CI job holding it was cancelled
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lock (O(state=present)).
  returned: when O(state=present)
  type: bool
released:
  description: Whether a lock was released (O(state=absent)).
  returned: when O(state=absent)
  type: bool
lock:
  description:
    - The lock in place after the call (ours, or the other run's when it is held), or the lock that was
      released; null when there is none.
  returned: always
  type: dict
  sample:
    who: alice
    version: 1.2.0
    release_id: 20261125T180000Z
    operation: deploy
    controller: laptop
    target: web1
    acquired_at: "2026-11-25T18:00:01Z"
    expires_at: "2026-11-25T18:30:01Z"
    ttl: 1800
holder:
  description: C(locked by <who> since <when> (<version>)) for a lock held by another run.
  returned: when the lock is held by another run
  type: str
ledger:
  description: With O(read_ledger=true), the live release and the newest good one before it (each null when there is none).
  returned: when O(read_ledger=true) and the lock was taken
  type: dict
  sample: {"live": {"release_id": "20261125T101500Z", "version": "1.1.0"}, "previous_good": null}
broken:
  description: The stale lock that was broken to take this one, or null.
  returned: when O(state=present)
  type: dict
progress_text:
  description: The in-progress record in a sentence (operation, version, release, who, start, stage).
  returned: when O(state=query) finds an in-progress record
  type: str
interrupted:
  description:
    - With O(state=query), the in-progress record in place (of a run going on or interrupted), or null.
    - The in-progress record of another run that did not finish (operation, release_id, version, stage,
      started_at, who), or null. The caller finishes or undoes that work before doing anything else.
    - With O(stage) and O(replace_interrupted=true), the record that was replaced.
  returned: always
  type: dict
progress:
  description: This run's in-progress record after O(stage).
  returned: when O(stage) is given
  type: dict
path:
  description: Path of the lock file.
  returned: always
  type: str
  sample: /var/lib/shipit/pulse/deploy.lock
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger, _lock


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            lock_dir=dict(type="path", default="/var/lib/shipit"),
            state=dict(type="str", default="present", choices=["present", "absent", "query"]),
            token=dict(type="str", no_log=False),
            who=dict(type="str"),
            ci_url=dict(type="str"),
            version=dict(type="str"),
            release_id=dict(type="str"),
            operation=dict(type="str", default="deploy"),
            controller=dict(type="str"),
            ttl=dict(type="int", default=1800),
            wait=dict(type="float", default=0),
            fail_when_held=dict(type="bool", default=True),
            stage=dict(type="str"),
            replace_interrupted=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            done=dict(type="bool", default=True),
            audit_log=dict(type="path"),
            reason=dict(type="str"),
            result=dict(type="str"),
            summary=dict(type="str"),
            details=dict(type="dict"),
            holder_info=dict(type="dict"),
            break_token=dict(type="str", no_log=False),
            read_ledger=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ["token"])],
        supports_check_mode=True,
    )
    p = module.params
    app = p["app"]
    what = ("releasing the deploy lock" if p["state"] == "absent"
            else f"recording stage {p['stage']} under the deploy lock" if p["stage"] else "taking the deploy lock")
    try:
        directory = _lock.app_dir(p["lock_dir"], app)
    except _ledger.LedgerError as exc:
        module.fail_json(msg=f"{what} of {app}: {exc}")
    if p["ttl"] < 1:
        module.fail_json(msg=f"{what} of {app}: ttl must be at least 1 second, got {p['ttl']}")
    if p["wait"] < 0:
        module.fail_json(msg=f"{what} of {app}: wait must not be negative, got {p['wait']}")
    if p["state"] == "absent" and not p["token"] and not p["force"]:
        module.fail_json(msg=f"{what} of {app}: give the token of the run that holds it, or force=true")
    audit_path = p["audit_log"] if p["audit_log"] is not None else os.path.join(p["lock_dir"], _lock.AUDIT_FILE)
    target = socket.gethostname()
    path = os.path.join(directory, _lock.LOCK_FILE)

    def audit(event, result, **fields):
        if audit_path and not module.check_mode:
            base = dict(app=app, who=p["who"], controller=p["controller"], run=p["token"], ci_url=p["ci_url"],
                        target=target)
            base.update(fields)
            _lock.append_audit(audit_path, _lock.audit_entry(event, result, base))

    try:
        if p["state"] == "query":
            lock, progress = _lock.status(directory)
            out = dict(changed=False, lock=lock, interrupted=progress, path=path)
            if lock is not None:
                out["holder"] = _lock.describe(lock, app, target)
            if progress is not None:
                out["progress_text"] = _lock.describe_progress(progress)
            module.exit_json(**out)
        if p["state"] == "absent":
            result = _lock.release(directory, token=p["token"], force=p["force"], clear_progress=p["done"],
                                   check_mode=module.check_mode)
            other = result["lock"] is not None and result["lock"].get("token") != p["token"]
            if p["force"] and result["released"] and other:
                audit("unlock", "forced", reason=p["reason"], released_lock=result["lock"],
                      interrupted=result["interrupted"])
            if p["result"]:
                audit(p["operation"], p["result"], version=p["version"], release_id=p["release_id"],
                      message=p["summary"], details=p["details"], lock_released=result["released"])
            out = dict(changed=result["changed"], released=result["released"], lock=result["lock"],
                       interrupted=result["interrupted"], path=path)
            if other and not result["released"]:
                out["holder"] = _lock.describe(result["lock"])
                module.warn(f"the lock of {app} was not released: it is not this run's, it is "
                            + _lock.describe(result["lock"]))
            module.exit_json(**out)

        if p["stage"]:
            # A stage is only recorded under a lock this run already holds: a run whose lock expired and was
            # taken by another run must stop, not take the lock again behind the other run's back.
            changed, record, replaced = _lock.write_progress(
                directory, p["token"],
                dict(operation=p["operation"], release_id=p["release_id"], version=p["version"], stage=p["stage"]),
                ttl=p["ttl"], replace_other=p["replace_interrupted"], check_mode=module.check_mode)
            lock, _progress = _lock.status(directory)
            module.exit_json(changed=changed, acquired=True, lock=lock, progress=record, interrupted=replaced,
                             broken=None, path=path)

        holder = dict(token=p["token"], who=p["who"], ci_url=p["ci_url"], version=p["version"],
                      release_id=p["release_id"], operation=p["operation"], controller=p["controller"], target=target)
        if p["holder_info"]:
            holder["holder_info"] = p["holder_info"]
        result = _lock.acquire(
            directory, holder, ttl=p["ttl"], wait=p["wait"], check_mode=module.check_mode, break_token=p["break_token"],
            on_break=lambda old, because: audit("lock_broken", because, version=p["version"],
                                                release_id=p["release_id"], stale_lock=old))
        out = dict(changed=result["changed"], acquired=result["acquired"], lock=result["lock"],
                   broken=result["broken"], interrupted=result["interrupted"], path=path)
        if result["acquired"] and p["read_ledger"]:
            try:
                data = _ledger.load(_ledger.ledger_path(p["lock_dir"], app), app)
            except _ledger.LedgerError as exc:
                _lock.release(directory, token=p["token"], clear_progress=False, check_mode=module.check_mode)
                module.fail_json(msg=f"{what} of {app} on {target}: {exc}; the lock was given back, nothing was changed: "
                                     "repair the ledger file (JSON) or restore it from a copy")
            out["ledger"] = dict(live=_ledger.live(data), previous_good=_ledger.previous_good(data))
        if result["acquired"] and result["changed"]:
            audit(p["operation"], "started", version=p["version"], release_id=p["release_id"],
                  interrupted=result["interrupted"])
        if not result["acquired"]:
            out["holder"] = _lock.describe(result["lock"], app, target)
            msg = (out["holder"] + (f" (waited {p['wait']:g}s)" if p["wait"] else "")
                   + ": nothing was changed; wait for that run to finish, or if it is dead, run playbooks/unlock.yml")
            if p["fail_when_held"]:
                module.fail_json(msg=msg, **out)
            module.exit_json(msg=msg, **out)
        module.exit_json(**out)
    except (_lock.LockError, _ledger.LedgerError, OSError) as exc:
        module.fail_json(msg=f"{what} of {app} on {target}: {exc}")


if __name__ == "__main__":
    main()
