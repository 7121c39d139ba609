#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_images
short_description: Make the images of a Compose release present on the Docker host and pin them by ID
version_added: 0.2.0
description:
  - For every service of a release, makes its image present on the host's Docker engine from the source the
    user configured (a C(docker load) of an archive already on the host, a registry pull, a build on the host,
    or an image that is simply expected there) and returns the image ID (C(sha256:...)) it resolved to.
  - The IDs are what a release pins (the C(image) of each service in its Compose file, recorded in the ledger),
    so a rollback never depends on a mutable tag or on a registry being reachable.
  - An archive whose image is already present is not loaded again; an archive whose image differs from the
    expected O(images[].id) is refused.
  - Uses the Docker CLI (no Docker SDK for Python needed on the host).
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is loaded, pulled or built. A load of an image that is absent and any build are reported as
        changes; a pull is reported as a change only when no image of that name is present yet.
  diff_mode:
    support: none
options:
  images:
    description:
      - One entry per service.
    type: list
    elements: dict
    required: true
    suboptions:
      service:
        description: Name of the Compose service.
        type: str
        required: true
      source:
        description:
          - C(load) - C(docker load) of O(images.archive) on the host.
          - C(pull) - C(docker pull) of O(images.ref).
          - C(build) - C(docker build) of O(images.context) on the host, tagged O(images.ref).
          - C(local) - O(images.ref) must already be on the host.
        type: str
        required: true
        choices: [load, pull, build, local]
      ref:
        description: Image name with a tag; required unless O(images.source=load).
        type: str
      archive:
        description: Path on the host of a C(docker save) archive holding one image (tar, or tar compressed with gzip).
        type: path
      id:
        description:
          - Expected image ID of the archive (C(sha256:...)), read from the archive where it was made.
          - When an image with this ID is present the archive is not needed at all.
        type: str
      context:
        description: Build context directory on the host (O(images.source=build)).
        type: path
      dockerfile:
        description: Dockerfile relative to the context (O(images.source=build)).
        type: str
      build_args:
        description: Build arguments (O(images.source=build)).
        type: dict
  docker_cli:
    description: Docker CLI to run.
    type: path
    default: docker
"""

EXAMPLES = r"""
- name: Load pulse from a shipped archive, pin the database image that is already there
  shipit.deploy.compose_images:
    images:
      - service: pulse
        source: load
        archive: /srv/pulse/.incoming/pulse-1.1.0.image.tar
      - service: postgres
        source: local
        ref: postgres:15
  register: pinned

- name: Pull from a registry
  shipit.deploy.compose_images:
    images:
      - service: web
        source: pull
        ref: registry.example.com/shop/web:2.4.1
"""

RETURN = r"""
images:
  description: Image ID per service. In check mode null for an image that only a pull or a build would make.
  returned: success
  type: dict
  sample:
    pulse: "sha256:c4a205c886957ec940ee1d7d318e2d7cd27c38a35064e4a6b08b11d0e0de41d0"
    postgres: "sha256:a7d3e992bbb9d0c2f2a95e5ae1e1b0f6a6c53b3a4fd7a8d9ab0a4c3b1e3d7f21"
actions:
  description: What was done per service, C(loaded), C(pulled), C(built) or C(present) (nothing to do).
  returned: success
  type: dict
  sample:
    pulse: loaded
    postgres: present
engine_version:
  description: Version of the Docker engine (for example to leave out Compose keys an old engine rejects).
  returned: success
  type: str
  sample: 20.10.24+dfsg1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import compose_images as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
