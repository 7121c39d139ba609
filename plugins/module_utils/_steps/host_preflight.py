# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.host_preflight: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import socket

from ansible_collections.shipit.deploy.plugins.module_utils import _preflight, _proxy


def proxy_problems(module, proxy):
    """The app's settings in the front proxy, and its public ports: free, or HAProxy's."""
    if not proxy:
        return []
    spec = {key: value for key, value in proxy.items() if key != "state_dir"}
    try:
        others = _proxy.load_apps(proxy["state_dir"]).values()
    except _proxy.ProxyError as exc:
        return [{"check": "proxy", "problem": str(exc), "fix": "repair or remove that file"}]
    problems = [{"check": "proxy", "problem": f"invalid proxy setting of {proxy['app']}: {problem}",
                 "fix": "fix the inventory (shipit_http_port, shipit_https_port, shipit_tls_certificate, shipit_slot_ports)"}
                for problem in _proxy.app_problems(spec, others)]
    rc, out, _err = module.run_command(["systemctl", "is-active", "haproxy.service"])
    haproxy_running = rc == 0 and out.strip() == "active"
    for port in (proxy["http_port"], proxy["https_port"]):
        if not isinstance(port, int) or not 0 < port < 65536:
            continue
        # Where another user's processes cannot be seen (a container without CAP_SYS_PTRACE) HAProxy's socket
        # is known by its user only: root, the user it binds as.
        foreign = [p for p in _preflight.listeners(port)
                   if not (p["name"] == "haproxy" or (p["pid"] is None and p["user"] == "root" and haproxy_running))]
        if foreign:
            who = _preflight.describe(foreign)
            problems.append({
                "check": "ports",
                "problem": f"the public port {port} of {proxy['app']} is in use by {who}, not by HAProxy",
                "fix": f"stop what listens on port {port} (an earlier deploy of the app without traffic switching? "
                       f"stop {proxy['app']}.service, or for a Compose stack its container: "
                       f"docker compose --project-name {proxy['app']} stop <service>), or give the app another public port",
            })
    return problems


SPEC = dict(
    argument_spec=dict(
        host_label=dict(type="str"),
        binaries=dict(type="list", elements="str", default=[]),
        package_hints=dict(type="dict", default={}),
        disk=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="path", required=True),
            min_free_mb=dict(type="int", required=True),
            why=dict(type="str"),
        )),
        ports=dict(type="list", elements="int", default=[]),
        port_owners=dict(type="list", elements="str", default=[]),
        port_owner_users=dict(type="list", elements="str", default=[]),
        proxy=dict(type="dict", options=dict(
            app=dict(type="str", required=True),
            http_port=dict(type="int"),
            https_port=dict(type="int"),
            tls_certificate=dict(type="path"),
            slot_ports=dict(type="raw"),
            health_path=dict(type="str", default="/health"),
            state_dir=dict(type="path", default=_proxy.STATE_DIR),
        )),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    p = module.params
    host = p["host_label"] or socket.gethostname()
    bad_ports = [port for port in p["ports"] if not 0 < port < 65536]
    if bad_ports:
        module.fail_json(msg=f"preflight of {host}: ports must be between 1 and 65535, got {bad_ports}")
    problems = _preflight.check_binaries(p["binaries"], p["package_hints"])
    disk_problems, free = _preflight.check_disk(p["disk"])
    port_problems, found = _preflight.check_ports(p["ports"], p["port_owners"], p["port_owner_users"])
    problems += disk_problems + port_problems + proxy_problems(module, p["proxy"])
    result = dict(changed=False, problems=problems, disk_free_mb=free, listeners=found)
    if problems:
        module.fail_json(msg=_preflight.summary(host, problems), **result)
    module.exit_json(msg=f"{host} is ready for the deploy", **result)
