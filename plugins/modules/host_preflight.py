#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_preflight
short_description: Check that a host can take a deploy before anything changes
version_added: 0.1.0
description:
  - Checks, on the target host, that the programs a deploy needs are installed, that the file systems the
    release and its backup go to have enough free space, and that the ports the application listens on are
    free or held by the application itself.
  - Runs every check and fails once with all the problems found, each naming what is wrong on which host
    and how to fix it.
  - Read-only; it runs the same in check mode.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  host_label:
    description: Name of the host in messages (the inventory name); defaults to the host's own name.
    type: str
  binaries:
    description: Programs that must be found on the C(PATH).
    type: list
    elements: str
    default: []
  package_hints:
    description: Debian package of each program, to say what to install (a program without one is its own package).
    type: dict
    default: {}
  disk:
    description:
      - Free space needed. The nearest existing parent of O(disk[].path) is measured, so a directory a first
        deploy will create can be checked too.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: A path on the file system to check.
        type: path
        required: true
      min_free_mb:
        description: Free megabytes (MiB) needed there.
        type: int
        required: true
      why:
        description: What the space is for, printed with a failure.
        type: str
  ports:
    description: TCP ports that must be free or held by processes of the O(port_owners) units.
    type: list
    elements: int
    default: []
  port_owners:
    description: Systemd units (for example C(pulse.service)) whose processes may already listen on O(ports).
    type: list
    elements: str
    default: []
  port_owner_users:
    description:
      - Users (for example C(pulse)) whose sockets may already listen on O(ports).
      - The socket's user is known even where the listening process is not (another user's process seen
        without CAP_SYS_PTRACE, as in some containers).
    type: list
    elements: str
    default: []
  proxy:
    description:
      - Under traffic switching, the application's settings in the host's front proxy (see
        M(shipit.deploy.front_proxy), whose checks these are). Ports in range and each used once, none of another
        application of the proxy, the TLS certificate on the host, the health path. Its public ports must be free
        or HAProxy's (the slots' ports go in O(ports)).
    type: dict
    suboptions:
      app:
        description: Name of the application.
        type: str
        required: true
      http_port:
        description: Public HTTP port.
        type: int
      https_port:
        description: Public HTTPS port.
        type: int
      tls_certificate:
        description: PEM file of the certificate and key on the host.
        type: path
      slot_ports:
        description: Loopback port of each slot, C(blue) and C(green).
        type: raw
      health_path:
        description: The path the proxy checks on each slot.
        type: str
        default: /health
      state_dir:
        description: Directory of the proxy's settings documents (the other applications it serves).
        type: path
        default: /var/lib/shipit/proxy
"""

EXAMPLES = r"""
- name: Check the host before the deploy
  shipit.deploy.host_preflight:
    host_label: "{{ inventory_hostname }}"
    binaries: [systemctl, systemd-analyze, systemd-run, tar, gzip]
    package_hints: {systemd-analyze: systemd, systemd-run: systemd}
    disk:
      - path: /srv/pulse
        min_free_mb: 600
        why: release and backup
    ports: [8080]
    port_owners: [pulse.service]
    port_owner_users: [pulse]
"""

RETURN = r"""
problems:
  description: Every problem found (check, problem, fix); empty when the host is ready.
  returned: always
  type: list
  elements: dict
disk_free_mb:
  description: Free megabytes found for each O(disk[].path).
  returned: always
  type: dict
  sample: {"/srv/pulse": 10240}
listeners:
  description: For each of O(ports), the processes listening on it (pid, name, systemd units of its cgroup, user).
  returned: always
  type: dict
"""

import socket

from ansible.module_utils.basic import AnsibleModule

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


def main():
    module = AnsibleModule(
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


if __name__ == "__main__":
    main()
