# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of shipit.deploy.systemd_release: copy the release tarball (artifact) to the host, then
run the module on it in the same call."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.shipit.deploy.plugins.plugin_utils import _release

MODULE = "shipit.deploy.systemd_release"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        artifact = args.pop("artifact", None)
        # Only staging unpacks a tarball; in check mode nothing is copied (the module says what it would do).
        if artifact and args.get("state", "present") == "present" and not self._task.check_mode:
            try:
                args["src"] = _release.send_artifact(self, artifact)
            except AnsibleActionFail as error:
                result.update(failed=True, msg=str(error))
                return result
        try:
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
