# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent: many steps of a deploy in one python start on the host (issue 15).

The controller sends a plan as JSON on standard input: ``{"check_mode": bool, "steps": [...]}``, each step
``{"name": "...", "step": "<kind>", "args": {...}, "always": false}``. The steps run in order; the first that
fails stops the plan, except the steps marked ``always`` (releasing the lock, say), which run anyway. The answer
on standard output is one JSON object: ``ok``, ``changed``, ``failed`` (the name of the failed step or null)
and ``steps`` (each step's name, kind, ok, changed, seconds, msg and result).

Standard library only, and the same module_utils the modules use: shipped to the host as a zipapp (the action
plugin shipit.deploy.agent builds it and caches it under /var/lib/shipit/agent/<hash>.pyz), run as
``python3 <hash>.pyz``.
"""

from __future__ import annotations

import json
import sys
import time

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger, _lock

STEPS = {}


class StepError(Exception):
    """A step that fails with a message for the user (the plan stops there)."""


def step(kind):
    def register(function):
        STEPS[kind] = function
        return function
    return register


def _app_dir(args):
    return _lock.app_dir(args.get("lock_dir", "/var/lib/shipit"), args["app"])


@step("lock")
def lock_step(args, check_mode):
    """Take the app's deploy lock (deploy_lock state=present) and read its ledger under it."""
    holder = dict(args.get("holder") or {}, token=args["token"])
    result = _lock.acquire(_app_dir(args), holder, float(args.get("ttl", 1800)), wait=float(args.get("wait", 0)),
                           check_mode=check_mode, break_token=args.get("break_token"))
    if not result["acquired"]:
        raise StepError(_lock.describe(result["lock"], args["app"]) + ": the deploy lock is held")
    data = _ledger.load(_ledger.ledger_path(args.get("lock_dir", "/var/lib/shipit"), args["app"]), args["app"])
    return dict(changed=result["changed"], msg="locked", broken=result["broken"], interrupted=result["interrupted"],
                ledger=dict(live=_ledger.live(data), previous_good=_ledger.previous_good(data)))


@step("progress")
def progress_step(args, check_mode):
    """Record the run's stage beside the lock (deploy_lock state=progress)."""
    changed, record, _replaced = _lock.write_progress(_app_dir(args), args["token"], args["record"],
                                                      float(args.get("ttl", 1800)), check_mode=check_mode)
    return dict(changed=changed, msg=f"stage {record.get('stage')}", record=record)


@step("unlock")
def unlock_step(args, check_mode):
    """Release the lock this run holds, and its in-progress record (deploy_lock state=absent)."""
    result = _lock.release(_app_dir(args), token=args["token"], check_mode=check_mode)
    return dict(changed=result["changed"], msg="unlocked" if result["released"] else "not locked by this run")


@step("record")
def record_step(args, check_mode):
    """Record a release in the app's ledger (release_ledger)."""
    path = _ledger.ledger_path(args.get("ledger_dir", "/var/lib/shipit"), args["app"])
    data = _ledger.load(path, args["app"])
    fields = dict(args.get("info") or {}, version=args.get("version"), checksum=args.get("checksum"),
                  reason=args.get("reason"))
    new, changed, _before, after = _ledger.record(data, args["release_id"], args["status"], fields,
                                                  args.get("previous_status", "good"))
    if changed and not check_mode:
        _ledger.save(path, new)
    return dict(changed=changed, msg=f"release {args['release_id']} recorded {args['status']}", release=after,
                live=_ledger.live(new))


@step("audit")
def audit_step(args, check_mode):
    """Append one line to the host's audit log (audit_log)."""
    path = args.get("path", "/var/lib/shipit/" + _lock.AUDIT_FILE)
    if not check_mode:
        _lock.append_audit(path, _lock.audit_entry(args["event"], args["result"], args.get("fields") or {}))
    return dict(changed=True, msg=f"audit: {args['event']} {args['result']}")


def run_plan(plan, steps=None, clock=time.monotonic):
    """Run the plan's steps (see the module docstring); returns the answer as a dict."""
    steps = STEPS if steps is None else steps
    entries = plan.get("steps")
    if not isinstance(entries, list) or not entries:
        raise StepError("the plan has no steps")
    unknown = sorted({str(e.get("step")) for e in entries if not isinstance(e, dict) or e.get("step") not in steps})
    if unknown:
        raise StepError(f"the plan names steps this agent does not know: {', '.join(unknown)}; nothing was run")
    check_mode = bool(plan.get("check_mode"))
    answer = {"ok": True, "changed": False, "failed": None, "steps": []}
    for entry in entries:
        name = entry.get("name") or entry["step"]
        if answer["failed"] is not None and not entry.get("always"):
            answer["steps"].append(dict(name=name, step=entry["step"], ok=None, changed=False, seconds=0.0,
                                        msg="skipped: an earlier step failed", result={}))
            continue
        started = clock()
        try:
            result = steps[entry["step"]](entry.get("args") or {}, check_mode)
            ok, msg = True, result.pop("msg", "")
        except (StepError, _lock.LockError, _ledger.LedgerError, OSError, KeyError, ValueError) as exc:
            result, ok = {}, False
            msg = f"missing argument {exc}" if isinstance(exc, KeyError) else str(exc)
        changed = bool(result.pop("changed", False))
        answer["steps"].append(dict(name=name, step=entry["step"], ok=ok, changed=changed,
                                    seconds=round(clock() - started, 4), msg=msg, result=result))
        answer["changed"] = answer["changed"] or changed
        if not ok and answer["failed"] is None:
            answer.update(ok=False, failed=name)
    return answer


def main(stdin=None, stdout=None):
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        answer = run_plan(json.load(stdin))
    except (StepError, ValueError) as exc:
        answer = {"ok": False, "changed": False, "failed": "plan", "steps": [], "msg": str(exc)}
    json.dump(answer, stdout)
    stdout.write("\n")
    return 0 if answer["ok"] else 1
