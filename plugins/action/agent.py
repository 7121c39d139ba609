# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of shipit.deploy.agent: run a plan of steps on the host in one python start.

The collection's module_utils are zipped into a zipapp whose name is the hash of its content; it is shipped
once per host and version (to /var/lib/shipit/agent/<hash>.pyz, 0600 root) and run with the host's python3
over the connection Ansible already holds, the plan on standard input. No AnsiballZ wrapper: a call costs a
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
from ansible.plugins.action import ActionBase

MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections/shipit/deploy/plugins/module_utils"
MAIN = ("from ansible_collections.shipit.deploy.plugins.module_utils import _agent\n"
        "raise SystemExit(_agent.main())\n")
MISSING = "__shipit_agent_missing__"


def build_zipapp(module_utils=MODULE_UTILS):
    """The agent's zipapp as bytes: the same content always gives the same bytes (fixed times, sorted names)."""
    members = {"__main__.py": MAIN}
    parts = PACKAGE.split("/")
    for depth in range(1, len(parts) + 1):
        members["/".join(parts[:depth]) + "/__init__.py"] = ""
    for name in sorted(os.listdir(module_utils)):
        if name.endswith(".py") and name != "__init__.py":
            with open(os.path.join(module_utils, name), encoding="utf-8") as handle:
                members[f"{PACKAGE}/{name}"] = handle.read()
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return raw.getvalue()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("steps", "agent_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        steps = self._task.args.get("steps")
        if not isinstance(steps, list) or not steps:
            raise AnsibleActionFail("shipit.deploy.agent needs steps: a list of {name, step, args}")
        agent_dir = self._task.args.get("agent_dir", "/var/lib/shipit/agent")
        payload = build_zipapp()
        path = f"{agent_dir}/{hashlib.sha256(payload).hexdigest()[:16]}.pyz"
        python = (task_vars or {}).get("ansible_python_interpreter") or "/usr/bin/python3"
        if python.startswith("auto"):
            python = "/usr/bin/python3"
        plan = json.dumps({"check_mode": bool(self._task.check_mode), "steps": steps})
        run = (f"if [ -f {shlex.quote(path)} ]; then exec {shlex.quote(python)} {shlex.quote(path)}; "
               f"else echo {MISSING}; fi")
        out = self._low_level_execute_command(run, sudoable=True, in_data=plan)
        if out["stdout"].strip() == MISSING:
            self._ship(payload, agent_dir, path)
            out = self._low_level_execute_command(run, sudoable=True, in_data=plan)
        try:
            answer = json.loads(out["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AnsibleActionFail(f"the agent on the host gave no answer (rc {out['rc']}): "
                                    f"{(out.get('stderr') or out['stdout']).strip()[-2000:]}")
        result.update(changed=answer["changed"], steps=answer["steps"], agent=path)
        if not answer["ok"]:
            failed = next((s for s in answer["steps"] if s["name"] == answer["failed"]), None)
            result.update(failed=True, failed_step=answer["failed"],
                          msg=failed["msg"] if failed else answer.get("msg", "the agent's plan failed"))
        return result

    def _ship(self, payload, agent_dir, path):
        """Put the zipapp at path: through the connection's temporary directory, then renamed into place."""
        tmpdir = self._make_tmp_path()
        staged = self._connection._shell.join_path(tmpdir, "agent.pyz")
        self._transfer_data(staged, payload)
        install = (f"mkdir -p -m 0700 {shlex.quote(agent_dir)} && chown 0:0 {shlex.quote(staged)} && chmod 0600 {shlex.quote(staged)} && "
                   f"mv {shlex.quote(staged)} {shlex.quote(path)}")
        out = self._low_level_execute_command(install, sudoable=True)
        self._remove_tmp_path(tmpdir)
        if out["rc"] != 0:
            raise AnsibleActionFail(f"could not install the agent at {path}: {out['stderr'].strip()[-1000:]}")
