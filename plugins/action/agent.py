# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of shipit.deploy.agent: run several of the collection's modules on the host in one call.

Each step's arguments are validated here, on the controller, against the module's own argument spec (the
same errors as the module's, before anything runs on the host). The collection's module_utils are zipped
into a zipapp named by the hash of its content, shipped once per host and version (to
<agent_dir>/<hash>.pyz, root 0600) and run with the host's python3 over the connection Ansible already
holds, the plan on standard input (plugins/module_utils/_agent.py). No AnsiballZ wrapper: a call costs a
python start and the work.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import zipfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.shipit.deploy.plugins.module_utils import _agent
from ansible_collections.shipit.deploy.plugins.plugin_utils import _controller, _release

MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections/shipit/deploy/plugins/module_utils"
MAIN = ("from ansible_collections.shipit.deploy.plugins.module_utils import _agent\n"
        "raise SystemExit(_agent.main())\n")
MISSING = "__shipit_agent_missing__"
STEP_KEYS = frozenset(("name", "module", "args", "always"))


def build_zipapp(module_utils=MODULE_UTILS):
    """The agent's zipapp as bytes: the same content always gives the same bytes (fixed times, sorted names)."""
    members = {"__main__.py": MAIN}
    parts = PACKAGE.split("/")
    for depth in range(1, len(parts) + 1):
        members["/".join(parts[:depth]) + "/__init__.py"] = ""
    for root, dirs, files in os.walk(module_utils):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("__", ".")))
        relative = os.path.relpath(root, module_utils)
        prefix = PACKAGE if relative == "." else f"{PACKAGE}/{relative}"
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as handle:
                    members[f"{prefix}/{name}"] = handle.read()
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name])
    return raw.getvalue()


def validate_step(index, step):
    """(name, module, always, validated params, no_log values) of one step, or AnsibleActionFail."""
    if not isinstance(step, dict) or not step.get("module"):
        raise AnsibleActionFail(f"step {index + 1} of shipit.deploy.agent needs module (one of "
                                f"{', '.join(_agent.MODULES)}) and args; nothing was run")
    name = str(step.get("name") or step["module"])
    unknown = sorted(set(step) - STEP_KEYS)
    if unknown:
        raise AnsibleActionFail(f"step {name}: unknown keys {', '.join(unknown)} (a step has {', '.join(sorted(STEP_KEYS))});"
                                " nothing was run")
    try:
        spec = dict(_agent.body(step["module"]).SPEC)
    except _agent.PlanError as exc:
        raise AnsibleActionFail(f"step {name}: {exc}") from None
    spec.pop("supports_check_mode", None)
    args = step.get("args") or {}
    if not isinstance(args, dict):
        raise AnsibleActionFail(f"step {name}: args must be a dictionary of the {step['module']} module's options")
    checked = ArgumentSpecValidator(**spec).validate(args)
    if checked.error_messages:
        problems = [("unsupported parameters: " if isinstance(error, UnsupportedError) else "") + error.msg
                    for error in checked.errors.errors]
        raise AnsibleActionFail(f"step {name} ({step['module']}): {'; '.join(problems)}; nothing was run")
    return name, step["module"], boolean(step.get("always", False)), checked.validated_parameters, checked._no_log_values


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("steps", "agent_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        steps = self._task.args.get("steps")
        if not isinstance(steps, list) or not steps:
            raise AnsibleActionFail("shipit.deploy.agent needs steps: a list of {name, module, args}")
        plan, secrets = [], set()
        for index, step in enumerate(steps):
            name, module, always, params, no_log_values = validate_step(index, step)
            plan.append(dict(name=name, module=module, always=always, params=params))
            secrets |= no_log_values
        agent_dir = self._task.args.get("agent_dir") or "/var/lib/shipit/agent"
        try:
            self._prepare(plan)
            answer = self._run_plan(plan, agent_dir, task_vars or {})
            dead = {s["name"]: _controller.dead_holder_token(s["result"]) for s in answer["steps"] if s["module"] == "deploy_lock"}
            dead = {name: token for name, token in dead.items() if token}
            if dead:
                # The run holding the lock was started on this controller and its ansible-playbook is gone: break it.
                for entry in plan:
                    if entry["name"] in dead:
                        entry["params"]["break_token"] = dead[entry["name"]]
                answer = self._run_plan(plan, agent_dir, task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        # Each step's arguments as its module would report them (invocation), masked below with the rest.
        for step, entry in zip(answer["steps"], plan):
            step["result"]["invocation"] = {"module_args": entry["params"]}
        answer = remove_values(answer, secrets)
        results = {s["name"]: s.pop("result") for s in answer["steps"]}
        for step in answer["steps"]:
            step["msg"] = results[step["name"]].get("msg", "")
        result.update(changed=answer["changed"], steps=answer["steps"], step_results=results)
        warnings = [w for r in results.values() for w in r.get("warnings", [])]
        if warnings:
            result["warnings"] = warnings
        if not answer["ok"]:
            result.update(failed=True, failed_step=answer["failed"], msg=results[answer["failed"]].get("msg", "failed"))
        return result

    def _prepare(self, plan):
        """What the modules' own action plugins do on the controller: name the run's process, copy artifacts."""
        for entry in plan:
            params = entry["params"]
            if entry["module"] == "deploy_lock" and params["state"] == "present" and not params["stage"]:
                _controller.name_the_taker(params)
            if entry["module"] == "systemd_release":
                artifact = params.pop("artifact", None)
                if artifact and params["state"] == "present" and not self._task.check_mode:
                    params["src"] = _release.send_artifact(self, artifact)

    def _python(self, task_vars):
        python = task_vars.get("ansible_python_interpreter") or ""
        if not python or python.startswith("auto"):
            python = (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python") or "python3"
        return python

    def _run_plan(self, plan, agent_dir, task_vars):
        payload = build_zipapp()
        path = f"{agent_dir}/{hashlib.sha256(payload).hexdigest()[:16]}.pyz"
        # Bytes: every connection plugin takes them (docker's takes nothing else).
        data = json.dumps({"check_mode": bool(self._task.check_mode), "steps": plan}).encode()
        command = (f"if [ -f {shlex.quote(path)} ]; then exec {shlex.quote(self._python(task_vars))} {shlex.quote(path)}; "
                   f"else echo {MISSING}; fi")
        out = self._low_level_execute_command(command, sudoable=True, in_data=data)
        if out["stdout"].strip() == MISSING:
            self._install(payload, agent_dir, path)
            out = self._low_level_execute_command(command, sudoable=True, in_data=data)
        try:
            answer = json.loads(out["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AnsibleActionFail(f"the agent {path} gave no answer (exit {out['rc']}): "
                                    f"{(out.get('stderr') or out['stdout']).strip()[-2000:]}") from None
        if answer.get("failed") == "plan":
            raise AnsibleActionFail(f"the agent {path} refused the plan: {answer.get('msg')}")
        return answer

    def _install(self, payload, agent_dir, path):
        """Put the zipapp at path: written to the connection's temporary directory, then renamed into place."""
        remote_tmp = self._connection._shell.tmpdir or self._make_tmp_path()
        staged = self._connection._shell.join_path(remote_tmp, "agent.pyz")
        self._transfer_data(staged, payload)
        directory, staged_q, path_q = shlex.quote(agent_dir), shlex.quote(staged), shlex.quote(path)
        # Owned by the user the agent runs as (root with become), readable by nobody else.
        install = (f'mkdir -p -m 0700 {directory} && chown "$(id -u):$(id -g)" {staged_q} && chmod 0600 {staged_q} '
                   f"&& mv {staged_q} {path_q}")
        out = self._low_level_execute_command(install, sudoable=True)
        if out["rc"] != 0:
            raise AnsibleActionFail(f"could not install the agent at {path}: {(out['stderr'] or out['stdout']).strip()[-1000:]}")
