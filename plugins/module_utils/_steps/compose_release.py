# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.compose_release: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import json
import os
import tempfile

from ansible_collections.shipit.deploy.plugins.module_utils import _release


class ComposeRelease(_release.Releases):
    """A release of a Compose stack: its files (state=present), then current (state=live)."""

    def write(self):
        p = self.p
        if p["compose_content"] is None:
            self.fail("state=present needs compose_content")
        for path, mode in ((self.app_dir, 0o755), (self.releases, 0o755), (self.release_dir, 0o750)):
            self.ensure_dir(path, 0, 0, mode)
        # The same text as Ansible's to_nice_json(sort_keys=true), so releases written before read the same.
        images = json.dumps(p["images"], indent=4, sort_keys=True, separators=(",", ": ")) + "\n"
        self.ensure_file(os.path.join(self.release_dir, "images.json"), images, 0, 0, 0o644)
        env_changed = self.ensure_file(os.path.join(self.release_dir, ".env"), p["env_content"], 0, 0, 0o600)
        compose_changed = self.ensure_file(os.path.join(self.release_dir, "compose.yaml"), p["compose_content"],
                                           0, 0, 0o640, validate=self.validate_compose)
        return dict(env_changed=env_changed, compose_changed=compose_changed)

    def validate_compose(self, content):
        """docker compose config of the candidate file with the release's .env: invalid YAML, keys or
        interpolations never land."""
        fd, candidate = tempfile.mkstemp(prefix=".compose.", suffix=".yaml", dir=self.release_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            rc, out, err = self.module.run_command([
                self.p["docker_cli"], "compose", "--project-directory", self.release_dir,
                "--env-file", os.path.join(self.release_dir, ".env"), "--file", candidate, "config", "--quiet"])
        finally:
            os.unlink(candidate)
        if rc != 0:
            self.fail(f"the Compose file of release {self.release_id} is not valid, so it was not installed: "
                      f"{(err or out).strip()[-2000:]}")

    def make_live(self):
        compose_file = os.path.join(self.release_dir, "compose.yaml")
        if not os.path.isfile(compose_file) and not (self.check and self.p["check_mode_staged"]):
            self.fail(f"release {self.release_id} is not on the host ({compose_file} is missing): nothing was changed")
        return dict(switched=self.switch_current())


SPEC = dict(
    argument_spec=dict(
        state=dict(type="str", choices=["present", "live"], default="present"),
        app_dir=dict(type="path", required=True),
        release_id=dict(type="str", required=True),
        host_label=dict(type="str"),
        images=dict(type="dict", default={}),
        env_content=dict(type="str", default="", no_log=True),
        compose_content=dict(type="str"),
        docker_cli=dict(type="path", default="docker"),
        check_mode_staged=dict(type="bool", default=False),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    _release.check_plain_name(module, "release_id", module.params["release_id"])
    release = ComposeRelease(module)
    current = release.current_target()
    result = release.write() if module.params["state"] == "present" else release.make_live()
    module.exit_json(changed=bool(release.changes), changes=release.changes, release_dir=release.release_dir,
                     current=current, **result)
