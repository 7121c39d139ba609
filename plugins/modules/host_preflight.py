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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import host_preflight as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
