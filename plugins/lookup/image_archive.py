# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: image_archive
short_description: Image ID and tags of the one image in a docker save archive on the controller
version_added: 0.2.0
description:
  - Reads C(manifest.json) of a C(docker save) archive (tar, or tar.gz, tar.bz2, tar.xz) in the controller's
    process, so the Compose role knows which images a host lacks before it ships any.
  - The ID is the digest of the image's config, as Docker's own format (C(<hex>.json)) and the OCI layout of
    Docker 25+ (C(blobs/sha256/<hex>)) name it.
  - Fails on an archive that does not hold exactly one image.
author:
  - shipit.deploy maintainers (@shipit-deploy)
options:
  _terms:
    description: Paths of the archives; a relative path is taken from the current directory.
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Read the image ID of each archive on the controller
  ansible.builtin.set_fact:
    archive_ids: "{{ query('shipit.deploy.image_archive', 'dist/pulse-1.1.0.image.tar') | map(attribute='id') }}"
"""

RETURN = r"""
_raw:
  description: One dictionary per archive.
  type: list
  elements: dict
  contains:
    path:
      description: The absolute path.
      type: str
    id:
      description: The image ID, C(sha256:<hex>).
      type: str
    tags:
      description: The repository tags the archive gives the image.
      type: list
      elements: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.shipit.deploy.plugins.module_utils import _compose


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        images = []
        for term in terms:
            path = os.path.abspath(os.path.expanduser(str(term)))
            try:
                image_id, tags = _compose.archive_image_id(path)
            except _compose.ComposeError as error:
                raise AnsibleLookupError(str(error)) from error
            images.append({"path": path, "id": image_id, "tags": tags})
        return images
