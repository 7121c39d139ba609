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

        me = _controller.name_the_taker(args)
        fail_when_held = boolean(args.get("fail_when_held", True), strict=False)
        args["fail_when_held"] = False
        result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

        dead_token = _controller.dead_holder_token(result, me)
        if dead_token:
            result = self._execute_module(module_name=MODULE, module_args=dict(args, break_token=dead_token),
                                          task_vars=task_vars)

        if result.get("acquired") is False and fail_when_held and not result.get("failed"):
            result["failed"] = True
        return result
