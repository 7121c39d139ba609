# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of shipit.deploy.deploy_lock: say which ansible-playbook process takes the lock, and
break at once the lock of a run whose process is gone from this controller (killed) instead of waiting for
the lock to expire."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.shipit.deploy.plugins.plugin_utils import _controller

MODULE = "shipit.deploy.deploy_lock"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        args = dict(self._task.args)
        taking = args.get("state", "present") == "present" and not args.get("stage")
        if not taking:
            return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

        me = _controller.identity()
        args["holder_info"] = dict(args.get("holder_info") or {}, controller_process=me)
        args.setdefault("controller", me["host"])
        fail_when_held = boolean(args.get("fail_when_held", True), strict=False)
        args["fail_when_held"] = False
        result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

        holder = result.get("lock") or {}
        process = (holder.get("holder_info") or {}).get("controller_process")
        if result.get("acquired") is False and not result.get("failed") and _controller.is_gone(process, me):
            # The run holding the lock was started here and its ansible-playbook process is gone: it is dead.
            result = self._execute_module(module_name=MODULE, module_args=dict(args, break_token=holder.get("token")),
                                          task_vars=task_vars)

        if result.get("acquired") is False and fail_when_held and not result.get("failed"):
            result["failed"] = True
        return result
