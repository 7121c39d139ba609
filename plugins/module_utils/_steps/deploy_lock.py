# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.deploy_lock: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import os
import socket

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger, _lock


SPEC = dict(
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


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
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
