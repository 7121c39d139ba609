#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: traffic
short_description: Move an application's traffic to one of its two slots in the host's HAProxy
version_added: 0.4.0
description:
  - O(state=switched) sends every new request of the application to O(slot), through HAProxy's runtime API (its
    admin socket, no reload), so no request is refused or dropped. The other slot gets no new request; the module
    waits until its requests in flight have finished, at most O(drain_timeout) seconds (the drain).
  - With O(fallback=true) the other slot stays ready as HAProxy's backup server. Should HAProxy's own checks find
    O(slot) down (during the bake of a new release), requests go to the previous release at once.
  - The live slot is then recorded in the application's proxy settings and the HAProxy config is written again
    (checked with C(haproxy -c) first), so a later reload or restart keeps the traffic where it is.
  - O(state=settled) takes the fallback out of service (after the bake).
  - The application must be served by the proxy already (M(shipit.deploy.front_proxy)); moving traffic to the
    slot that already has it only makes sure the proxy agrees, and reports no change.
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
    description: Name of the application in the proxy.
    type: str
    required: true
  state:
    description: C(switched) moves the traffic to O(slot); C(settled) takes the fallback out of service.
    type: str
    choices: [switched, settled]
    default: switched
  slot:
    description: The slot that takes the traffic, with O(state=switched).
    type: str
    choices: [blue, green]
  drain_timeout:
    description: Seconds to wait for the requests in flight on the other slot to finish.
    type: float
    default: 30
  fallback:
    description: Keep the other slot as HAProxy's backup server (until O(state=settled)).
    type: bool
    default: false
  state_dir:
    description:
      - Directory of the proxy's settings documents, as given to M(shipit.deploy.front_proxy). The config file and
        the admin socket are those recorded there.
    type: path
    default: /var/lib/shipit/proxy
notes:
  - Runs as root, on a host whose HAProxy runs with the config of M(shipit.deploy.front_proxy).
seealso:
  - module: shipit.deploy.front_proxy
"""

EXAMPLES = r"""
- name: Move pulse's traffic to the green slot, keeping blue as the fallback
  shipit.deploy.traffic:
    app: pulse
    slot: green
    drain_timeout: 30
    fallback: true

- name: The bake passed, take the fallback out of service
  shipit.deploy.traffic:
    app: pulse
    state: settled
"""

RETURN = r"""
live_slot:
  description: The slot that takes the traffic now.
  returned: always
  type: str
  sample: green
previous_slot:
  description: The slot that had the traffic before, or null.
  returned: always
  type: str
  sample: blue
switch_seconds:
  description: Seconds the proxy took to move the traffic (the runtime API calls).
  returned: when the traffic moved
  type: float
drained:
  description: Whether the other slot finished its requests in flight within O(drain_timeout).
  returned: when the traffic moved
  type: bool
drain_seconds:
  description: Seconds the drain took.
  returned: when the traffic moved
  type: float
changes:
  description: What was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import traffic as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
