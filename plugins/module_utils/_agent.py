# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host agent: several steps of a deploy in one python start on the host.

The controller (plugins/action/agent.py) sends a plan as JSON on standard input:
``{"check_mode": bool, "steps": [{"name": "...", "module": "<module>", "params": {...}, "always": false}]}``.
Each step is one of the collection's modules, its parameters already validated against the module's argument
spec; it runs the module's own body (``_steps/<module>.py``) with a ``_task.Task`` for its AnsibleModule. The
steps run in order; the first that fails stops the plan, except the steps marked ``always`` (releasing the
lock, say), which run anyway. The answer on standard output is one JSON object: ``ok``, ``changed``, ``failed``
(the name of the failed step, or null) and ``steps`` (each step's name, module, ok, changed, seconds and the
module's result; ``ok`` is null for a step skipped after a failure).

Standard library only: shipped to the host as a zipapp of module_utils and run as ``python3 <hash>.pyz``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

from ansible_collections.shipit.deploy.plugins.module_utils import _task

# The modules a plan may name. Each body is imported when a plan uses it, so a call imports only its steps.
MODULES = ("compose_images", "compose_prune", "compose_release", "db_backup", "deploy_lock", "front_proxy",
           "health_check", "host_preflight", "release_ledger", "systemd_release", "traffic")
PACKAGE = "ansible_collections.shipit.deploy.plugins.module_utils._steps"


class PlanError(Exception):
    """A plan the agent cannot run at all: nothing was run."""


def body(module):
    """The body of a module a plan names (its SPEC and run)."""
    if module not in MODULES:
        raise PlanError(f"the plan names {module!r}, not a module the agent runs ({', '.join(MODULES)}); nothing was run")
    return importlib.import_module(f"{PACKAGE}.{module}")


def run_plan(plan, load=body, clock=time.monotonic):
    """Run the plan's steps (see the module docstring); returns the answer as a dict."""
    entries = plan.get("steps") if isinstance(plan, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise PlanError("the plan has no steps; nothing was run")
    bodies = [load(entry.get("module")) for entry in entries]
    check_mode = bool(plan.get("check_mode"))
    answer = {"ok": True, "changed": False, "failed": None, "steps": []}
    for entry, module in zip(entries, bodies):
        name = entry.get("name") or entry["module"]
        if answer["failed"] is not None and not entry.get("always"):
            answer["steps"].append(dict(name=name, module=entry["module"], ok=None, changed=False, seconds=0.0,
                                        result={"msg": f"skipped: step {answer['failed']} failed"}))
            continue
        started = clock()
        failed, result = _task.run(module.run, entry.get("params") or {}, check_mode)
        changed = bool(result.get("changed"))
        answer["steps"].append(dict(name=name, module=entry["module"], ok=not failed, changed=changed,
                                    seconds=round(clock() - started, 4), result=result))
        answer["changed"] = answer["changed"] or changed
        if failed and answer["failed"] is None:
            answer.update(ok=False, failed=name)
    return answer


def main(stdin=None, stdout=None):
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        answer = run_plan(json.load(stdin))
    except (PlanError, ValueError) as exc:
        answer = {"ok": False, "changed": False, "failed": "plan", "steps": [], "msg": str(exc)}
    json.dump(answer, stdout, default=str)
    stdout.write("\n")
    return 0 if answer["ok"] else 1
