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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import deploy_lock as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
