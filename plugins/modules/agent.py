#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent
short_description: Run many host-side steps of a deploy in one call
version_added: 0.5.0
description:
  - Runs a plan of steps on the host in one python start, the host side of a deploy in few calls. The steps are
    the same code as the collection's modules (its module_utils), shipped once per host and version as a
    zipapp (C(<agent_dir>/<hash>.pyz)) and run with the host's python3, without a module wrapper.
  - The steps run in order. The first that fails stops the plan; steps with C(always) run anyway.
  - Work in progress (issue 15), not used by the collection's playbooks yet. Steps so far are C(lock) (take
    the deploy lock and read the ledger), C(progress) (record the stage), C(record) (a release in the
    ledger), C(audit) (a line of the audit log) and C(unlock).
author:
  - shipit.deploy maintainers (@shipit-deploy)
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
options:
  steps:
    description: The plan, a list of steps, each with C(step) (its kind), C(args), and optionally C(name) and C(always).
    type: list
    elements: dict
    required: true
  agent_dir:
    description: Where the zipapp is kept on the host.
    type: path
    default: /var/lib/shipit/agent
"""

EXAMPLES = r"""
- name: Lock, and record the first stage, in one call
  shipit.deploy.agent:
    steps:
      - {name: lock, step: lock, args: {app: pulse, token: "{{ shipit_run.id }}", ttl: 1800}}
      - {name: progress, step: progress, args: {app: pulse, token: "{{ shipit_run.id }}", record: {stage: release}}}
"""

RETURN = r"""
steps:
  description: Each step's name, kind, ok (null when skipped), changed, seconds, msg and result, in order.
  returned: always
  type: list
  elements: dict
failed_step:
  description: The name of the step that failed.
  returned: failure
  type: str
agent:
  description: Path of the zipapp on the host.
  returned: always
  type: str
"""
