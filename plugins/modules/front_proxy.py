#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: front_proxy
short_description: Serve an application through the host's HAProxy, in two slots, or put it in maintenance
version_added: 0.4.0
description:
  - The host side of the C(shipit.deploy.front_proxy) role. HAProxy serves every application of the host, each on
    its own public port(s), from two slots (C(blue) and C(green)) on loopback ports. Only the live slot gets
    traffic; M(shipit.deploy.traffic) moves it.
  - The application's settings are kept in O(state_dir) (one JSON document per application, with its live slot
    and its maintenance flag), and the whole of O(config) is rendered from those documents. It is checked with
    C(haproxy -c) before it is installed, and HAProxy is reloaded (seamlessly, its listening sockets are handed
    over) or started when it changed. A config that shipit did not write is kept once as C(<config>.before-shipit).
  - HAProxy is installed from Debian's package with C(apt-get) when it is missing (in check mode that is only
    reported), so neither check mode nor a first run needs python3-apt on the host.
  - Invalid settings (a port out of range or used twice, a port of another application, a TLS certificate that
    is not on the host) are refused before anything changes, with the setting named.
  - O(maintenance=true) answers every request of the application with C(503) and a C(Retry-After) header and a
    maintenance page, served by HAProxy itself. It is set through HAProxy's runtime API (a map of the applications
    in maintenance, also kept on disk), so there is no reload and no connection is closed or refused.
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
  app:
    description: Name of the application, of its frontend, its backend and its settings document.
    type: str
    required: true
  http_port:
    description: The public HTTP port of the application on the host (HAProxy binds it on every address).
    type: int
    required: true
  https_port:
    description: The public HTTPS port, with O(tls_certificate).
    type: int
  tls_certificate:
    description: A PEM file on the host with the certificate (and its chain) and its private key, for O(https_port).
    type: path
  slot_ports:
    description: The loopback port of each slot, C(blue) and C(green).
    type: dict
    required: true
  health_path:
    description: The path HAProxy checks on each slot (C(GET), C(200) expected) to take a slot that stops answering out of service.
    type: str
    default: /health
  maintenance:
    description:
      - V(true) serves the maintenance page for every request, V(false) serves the application again.
      - When it is not given the application keeps its maintenance flag.
    type: bool
  maintenance_page:
    description: The HTML of the maintenance page; a plain page naming the application when it is not given.
    type: str
  retry_after:
    description: Seconds in the C(Retry-After) header of the maintenance page.
    type: int
    default: 30
  timeout_connect:
    description: Seconds HAProxy waits for a slot to accept a connection.
    type: float
    default: 2
  timeout_client:
    description: Seconds of inactivity of a client before HAProxy closes its connection.
    type: float
    default: 30
  timeout_server:
    description: Seconds HAProxy waits for an answer of the application.
    type: float
    default: 30
  check_interval:
    description: Seconds between HAProxy's own checks of each slot (a slot is out after 2 failed checks).
    type: float
    default: 0.5
  config:
    description: The HAProxy config file.
    type: path
    default: /etc/haproxy/haproxy.cfg
  state_dir:
    description: Directory of the applications' proxy settings documents.
    type: path
    default: /var/lib/shipit/proxy
  socket:
    description: HAProxy's admin socket (runtime API).
    type: path
    default: /run/haproxy/admin.sock
notes:
  - Runs as root, on Debian or a derivative (C(apt-get)).
  - The proxy-wide settings (timeouts, check interval, socket) are those of the last call. Keep them the same for
    every application of a host (group_vars).
seealso:
  - module: shipit.deploy.traffic
"""

EXAMPLES = r"""
- name: Serve pulse on port 8080 from slots on 18080 and 18081
  shipit.deploy.front_proxy:
    app: pulse
    http_port: 8080
    slot_ports: {blue: 18080, green: 18081}
    health_path: /health
  register: proxy

- name: Put pulse in maintenance
  shipit.deploy.front_proxy:
    app: pulse
    http_port: 8080
    slot_ports: {blue: 18080, green: 18081}
    maintenance: true
"""

RETURN = r"""
live_slot:
  description: The slot that takes the application's traffic, or null before its first deploy.
  returned: always
  type: str
  sample: blue
idle_slot:
  description: The other slot, where the next release starts.
  returned: always
  type: str
  sample: green
slot_ports:
  description: The loopback port of each slot.
  returned: always
  type: dict
  sample: {"blue": 18080, "green": 18081}
maintenance:
  description: Whether the application is in maintenance now.
  returned: always
  type: bool
maintenance_before:
  description: Whether the application was in maintenance before this call.
  returned: always
  type: bool
config_changed:
  description: Whether the HAProxy config was (or would be) rewritten.
  returned: always
  type: bool
changes:
  description: What was changed (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["wrote /etc/haproxy/haproxy.cfg", "reloaded haproxy"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import front_proxy as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
