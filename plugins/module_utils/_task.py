# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module's body needs of AnsibleModule, for the host agent (standard library only).

Each module's body (``module_utils/_steps/<module>.py``) is a function ``run(module)`` that reads
``module.params`` and ``module.check_mode``, may call ``run_command``, ``get_bin_path`` and ``warn``, and ends
with ``exit_json`` or ``fail_json``. The module passes its AnsibleModule; the agent passes a Task, whose
parameters the controller has already validated against the same argument spec (plugins/action/agent.py).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

# Where AnsibleModule.get_bin_path looks besides PATH.
SBIN_DIRS = ("/sbin", "/usr/sbin", "/usr/local/sbin")


class Exit(BaseException):
    """exit_json or fail_json was called: like AnsibleModule's, it ends the body (and passes every except)."""

    def __init__(self, result):
        super().__init__(result.get("msg", ""))
        self.result = result


class Task:
    """One step of the agent's plan, seen by a module's body as its AnsibleModule."""

    def __init__(self, params, check_mode=False):
        self.params = params
        self.check_mode = check_mode
        self.warnings = []

    def exit_json(self, **result):
        result.setdefault("changed", False)
        raise Exit(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg)
        result.setdefault("changed", False)
        raise Exit(result)

    def warn(self, warning):
        self.warnings.append(warning)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS, *(opt_dirs or [])])
        found = shutil.which(name, path=path)
        if found is None and required:
            self.fail_json(msg=f"Failed to find required executable {name} in paths: {path}")
        return found

    def run_command(self, args, check_rc=False, environ_update=None, data=None, binary_data=False, cwd=None,
                    before_communicate_callback=None, expand_user_and_vars=True, handle_exceptions=True):
        """AnsibleModule.run_command for an argv list: (rc, stdout, stderr) as text, data on stdin."""
        del expand_user_and_vars  # an argv is never expanded here
        env = dict(os.environ, **(environ_update or {}))
        if data is not None and not binary_data:
            data = data + "\n"
        try:
            process = subprocess.Popen(args, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
        except OSError as exc:
            if not handle_exceptions:
                raise
            return 2, "", str(exc)
        if before_communicate_callback:
            before_communicate_callback(process)
        stdout, stderr = process.communicate(data.encode() if isinstance(data, str) else data)
        out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
        if check_rc and process.returncode != 0:
            self.fail_json(msg=err.strip() or out.strip() or f"{args[0]} failed", rc=process.returncode,
                           stdout=out, stderr=err, cmd=args)
        return process.returncode, out, err

    def fetch_url(self, url, data=None, headers=None, method="GET", timeout=10):
        """ansible.module_utils.urls.fetch_url for an HTTP(S) request: (response, info), info["status"] -1 and
        info["msg"] the reason when no response came; validate_certs and use_proxy from the parameters."""
        handlers = [] if self.params.get("use_proxy", True) else [urllib.request.ProxyHandler({})]
        if url.startswith("https:"):
            context = ssl.create_default_context()
            if not self.params.get("validate_certs", True):
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
        try:
            response = urllib.request.build_opener(*handlers).open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            return exc, {"status": exc.code, "msg": str(exc), "body": exc.read()}
        except urllib.error.URLError as exc:
            return None, {"status": -1, "msg": f"Request failed: <url error {exc.reason}>"}
        except (OSError, ValueError) as exc:
            return None, {"status": -1, "msg": f"Connection failure: {exc}"}
        return response, {"status": response.status, "msg": "OK"}


def run(body, params, check_mode=False):
    """Run a module's body as one step: (failed, result), the result as the module would return it."""
    task = Task(params, check_mode)
    try:
        body(task)
    except Exit as done:
        result = done.result
    else:
        result = {"failed": True, "msg": "the module ended without a result", "changed": False}
    if task.warnings:
        result["warnings"] = task.warnings
    return bool(result.get("failed")), result
