# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: artifact
short_description: Size and SHA-256 checksum of a release artifact on the controller
version_added: 0.2.0
description:
  - Reads a file on the controller, in the controller's process. It does the job of a C(ansible.builtin.stat)
    task delegated to localhost without starting a module, which saves a task's worth of time in every deploy.
  - A missing file is not an error; RV(_raw[].exists) says whether it is there.
  - A relative path is taken from the current directory, like a task delegated to localhost.
author:
  - shipit.deploy maintainers (@shipit-deploy)
options:
  _terms:
    description: Paths of the artifacts.
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Refuse an artifact whose checksum does not match
  ansible.builtin.assert:
    that: lookup('shipit.deploy.artifact', shipit_artifact).checksum == shipit_artifact_sha256
"""

RETURN = r"""
_raw:
  description: One dictionary per path.
  type: list
  elements: dict
  contains:
    path:
      description: The absolute path.
      type: str
    exists:
      description: Whether the path is a regular file (or a link to one).
      type: bool
    size:
      description: Size in bytes, 0 when it is missing.
      type: int
    checksum:
      description: SHA-256 of the content in hex, empty when it is missing.
      type: str
"""

import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

CHUNK = 1 << 20


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [self._describe(str(term)) for term in terms]

    @staticmethod
    def _describe(path):
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            return {"path": path, "exists": False, "size": 0, "checksum": ""}
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK), b""):
                    digest.update(chunk)
        except OSError as error:
            raise AnsibleLookupError(f"cannot read the artifact {path}: {error}") from error
        return {"path": path, "exists": True, "size": os.path.getsize(path), "checksum": digest.hexdigest()}
