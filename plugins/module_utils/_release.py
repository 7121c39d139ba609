# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The releases directory of an application on a host, shared by the kind modules (systemd_release,
compose_release): <app_dir>/releases/<release_id>, and <app_dir>/current, a relative link to the live one.

Every change goes through Releases.change(), which records it and says whether to make it (not in check
mode), so a module reports the same list of changes whether it makes them or not.
"""

from __future__ import annotations

import os
import socket
import stat

from ansible_collections.shipit.deploy.plugins.module_utils import _files

NEXT_LINK = ".current.next"
# The two slots of an app under traffic switching (its releases in slots/<slot>; the front proxy's servers).
SLOTS = ("blue", "green")


def check_plain_name(module, what, value):
    """Fail unless value can be a directory name under the app directory."""
    if not value or "/" in value or value.startswith("."):
        module.fail_json(msg=f"{what} must be a plain directory name, got {value!r}: nothing was changed")


class Releases:
    """Takes the options every such module has (doc fragment shipit.deploy.attributes.releases, and release_id)
    from module.params, kept as self.p."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.host = self.p["host_label"] or socket.gethostname()
        self.app_dir = self.p["app_dir"].rstrip("/")
        self.releases = os.path.join(self.app_dir, "releases")
        self.release_id = self.p["release_id"]
        self.release_dir = os.path.join(self.releases, self.release_id) if self.release_id else None
        self.current = os.path.join(self.app_dir, "current")
        self.changes = []

    def fail(self, msg, **extra):
        self.module.fail_json(msg=f"{self.host}: {msg}", release_dir=self.release_dir, changes=self.changes,
                              changed=bool(self.changes) and not self.check, **extra)

    def change(self, what):
        """Record a change; True when it is to be made (not in check mode)."""
        self.changes.append(what)
        return not self.check

    def run(self, argv, what):
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.fail(f"{what} failed ({' '.join(argv)}, exit {rc}): {(err or out).strip()[-2000:]}")
        return out

    def current_target(self):
        """The release id current links to, or None."""
        if not os.path.islink(self.current):
            return None
        return os.path.basename(os.readlink(self.current).rstrip("/"))

    def ensure_dir(self, path, uid, gid, mode):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if self.change(f"created {path}"):
                os.makedirs(path)  # with its parents, like the first deploy to a new root
                os.chown(path, uid, gid)
                os.chmod(path, mode)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.fail(f"{path} exists and is not a directory: move it away")
        # uid or gid -1 (created in check mode only): nothing to compare yet.
        if -1 not in (uid, gid) and (st.st_uid, st.st_gid) != (uid, gid) and self.change(f"set the owner of {path}"):
            os.chown(path, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode and self.change(f"set the mode of {path}"):
            os.chmod(path, mode)

    def ensure_file(self, path, content, uid, gid, mode, validate=None):
        """Write path atomically when its content, owner or mode differ; True when it changed (or would).
        validate(content) runs before the write and may fail the module; not in check mode, where what it
        checks against (the release's files) may not be on the host yet."""
        data = content.encode()
        try:
            with open(path, "rb") as handle:
                same = handle.read() == data
            st = os.stat(path)
            same = same and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode)
        except FileNotFoundError:
            same = False
        if same:
            return False
        if validate is not None and not self.check:
            validate(content)
        if self.change(f"wrote {path}"):
            _files.write_file_atomic(path, data, mode, uid, gid)
        return True

    def switch_current(self):
        """Point current at the release by rename(2) of a prepared link: readers see the old or the new release,
        never none. True when it moved (or would)."""
        if self.current_target() == self.release_id:
            return False
        if self.change(f"switched current to releases/{self.release_id}"):
            nxt = os.path.join(self.app_dir, NEXT_LINK)
            if os.path.lexists(nxt):
                os.unlink(nxt)
            os.symlink(os.path.join("releases", self.release_id), nxt)
            os.replace(nxt, self.current)
            _files.fsync_dir(self.app_dir)
        return True
