#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_release
short_description: Write a release of a Docker Compose stack, or point current at it
version_added: 0.2.0
description:
  - The file side of the C(shipit.deploy.compose_stack) role, one call per step, so a deploy makes a few
    round trips to the host instead of one per file and directory. Images, migrations and C(docker compose up)
    are done by other tasks of the role.
  - O(state=present) creates C(<app_dir>/releases/<release_id>) and writes the release's files in it. These are
    C(images.json) (the image ID each service is pinned to, C(0644)), C(.env) (C(0600), never printed) and
    C(compose.yaml) (C(0640)). The Compose file is checked with C(docker compose config --quiet) against the
    release's C(.env) before it is installed, so an invalid file never lands. Each file is written only when
    its content differs, atomically.
  - O(state=live) points C(current) at the release by rename(2) of a prepared link, so it always names one
    whole release. A release without its C(compose.yaml) on the host is refused with C(nothing was changed).
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
  - shipit.deploy.attributes.releases
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  state:
    description: C(present) writes the release's files, C(live) points C(current) at the release.
    type: str
    choices: [present, live]
    default: present
  release_id:
    description: Name of the release's directory under C(releases/).
    type: str
    required: true
  images:
    description: With O(state=present), the image ID (C(sha256:...)) each service of the release is pinned to.
    type: dict
    default: {}
  env_content:
    description: With O(state=present), the content of the release's C(.env). It is never printed.
    type: str
    default: ""
  compose_content:
    description: With O(state=present), the content of the release's C(compose.yaml).
    type: str
  docker_cli:
    description: The C(docker) program, with its C(compose) plugin.
    type: path
    default: docker
notes:
  - Runs as root. Release ids must sort by time; C(shipit.deploy.deploy) makes them from a UTC timestamp.
seealso:
  - module: shipit.deploy.compose_images
  - module: shipit.deploy.compose_prune
"""

EXAMPLES = r"""
- name: Write the release's files
  shipit.deploy.compose_release:
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
    images: {pulse: "sha256:4c1e...", postgres: "sha256:9f2a..."}
    env_content: "{{ lookup('ansible.builtin.template', 'env.j2') }}"
    compose_content: "{{ lookup('ansible.builtin.template', 'compose.yaml.j2') }}"
  register: staged

- name: Point current at it
  shipit.deploy.compose_release:
    state: live
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
"""

RETURN = r"""
release_dir:
  description: Directory of the release.
  returned: always
  type: str
  sample: /srv/pulse/releases/20261125T101500Z
current:
  description: The release id C(current) linked to before this call, or null.
  returned: always
  type: str
changes:
  description: What was changed (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
env_changed:
  description: Whether C(.env) was written.
  returned: when O(state=present)
  type: bool
compose_changed:
  description: Whether C(compose.yaml) was written.
  returned: when O(state=present)
  type: bool
switched:
  description: Whether C(current) was moved to the release.
  returned: when O(state=live)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import compose_release as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
