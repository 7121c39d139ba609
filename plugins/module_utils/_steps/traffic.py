# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.traffic: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

from ansible_collections.shipit.deploy.plugins.module_utils import _proxy


SPEC = dict(
    argument_spec=dict(
        app=dict(type="str", required=True),
        state=dict(type="str", choices=["switched", "settled"], default="switched"),
        slot=dict(type="str", choices=list(_proxy.SLOTS)),
        drain_timeout=dict(type="float", default=30),
        fallback=dict(type="bool", default=False),
        state_dir=dict(type="path", default=_proxy.STATE_DIR),
    ),
    required_if=[("state", "switched", ["slot"])],
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    p = module.params
    if p["drain_timeout"] < 0:
        module.fail_json(msg=f"drain_timeout must be 0 or more seconds, got {p['drain_timeout']:g}: nothing was changed")
    try:
        if p["state"] == "settled":
            result = _proxy.settle(p["state_dir"], p["app"], module.check_mode)
        else:
            result = _proxy.switch(p["state_dir"], p["app"], p["slot"], p["fallback"], p["drain_timeout"],
                                   module.run_command, module.check_mode)
    except _proxy.ProxyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(result["changes"]), **result)
