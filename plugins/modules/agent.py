#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent
short_description: Run several of the collection's modules on the host in one call
version_added: 0.5.0
description:
  - Runs a plan of steps on the host in one python start. Each step is one of the collection's modules with
    its usual arguments; it runs the module's own code, shipped once per host and collection version as a
    zipapp (C(<agent_dir>/<hash>.pyz), readable by its owner only) and run with the host's python3 over the
    connection Ansible already holds, without the module wrapper a module call costs (about 0.3 s each).
  - The arguments of every step are validated on the controller against the module's argument spec before
    anything runs on the host. An unknown option, a missing required one or a wrong type fails the task with
    the module's own message and runs nothing.
  - The steps run in order. The first that fails stops the plan and fails the task with its message; a step
    with O(steps[].always=true) runs anyway (releasing a lock, say).
  - Check mode is passed to every step, which predicts its changes as the module does. Values of options the
    modules mark C(no_log) are masked in the whole result.
  - The modules a step may name are M(shipit.deploy.compose_images), M(shipit.deploy.compose_prune),
    M(shipit.deploy.compose_release), M(shipit.deploy.db_backup), M(shipit.deploy.deploy_lock),
    M(shipit.deploy.front_proxy), M(shipit.deploy.health_check), M(shipit.deploy.host_preflight),
    M(shipit.deploy.release_ledger), M(shipit.deploy.systemd_release) and M(shipit.deploy.traffic). As with the
    module's own action plugins, a M(shipit.deploy.deploy_lock) step taking the lock names the run's
    ansible-playbook process (and breaks at once the lock of a run from this controller whose process is gone),
    and a M(shipit.deploy.systemd_release) step copies its O(shipit.deploy.systemd_release#module:artifact) to
    the host first.
  - The agent runs as the become user (root for the collection's playbooks) with C(python3) from its PATH,
    or C(ansible_python_interpreter) when the inventory sets one, without interpreter discovery.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
    description: The action plugin validates the steps, ships the agent and runs the plan over the connection.
options:
  steps:
    description: The plan, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The step's name in the result (C(step_results) is keyed by it). Defaults to the module's name.
        type: str
      module:
        description: The module the step runs (its short name).
        type: str
        required: true
        choices: [compose_images, compose_prune, compose_release, db_backup, deploy_lock, front_proxy, health_check,
                  host_preflight, release_ledger, systemd_release, traffic]
      args:
        description: The module's arguments, as for a task of that module.
        type: dict
        default: {}
      always:
        description: Run the step even when an earlier step failed.
        type: bool
        default: false
  agent_dir:
    description: Where the zipapp is kept on the host.
    type: path
    default: /var/lib/shipit/agent
notes:
  - Each step takes its module's time for the work and a few milliseconds more; the call itself costs one
    command over the connection and a python start (about 0.1 s), and the first call of a collection version
    on a host one more to ship the zipapp.
seealso:
  - module: shipit.deploy.deploy_lock
  - module: shipit.deploy.release_ledger
"""

EXAMPLES = r"""
- name: Record the stage and move the traffic, in one call
  shipit.deploy.agent:
    steps:
      - name: progress
        module: deploy_lock
        args: {app: pulse, token: "{{ shipit_run.id }}", stage: switch}
      - name: switch
        module: traffic
        args: {app: pulse, slot: green, fallback: true, drain_timeout: 10}
  register: switched

- name: Say how long the switch took
  ansible.builtin.debug:
    msg: "{{ switched.step_results.switch.switch_seconds }}"
"""

RETURN = r"""
steps:
  description:
    - Each step in order, with its C(name), C(module), C(ok) (V(null) when it was skipped after a failure),
      C(changed), C(seconds) and the module's C(result).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: progress, module: deploy_lock, ok: true, changed: false, seconds: 0.002, msg: ''}
step_results:
  description: The result of each step as its module returns it, by step name.
  returned: always
  type: dict
failed_step:
  description: The name of the step that failed.
  returned: failure
  type: str
  sample: switch
"""
