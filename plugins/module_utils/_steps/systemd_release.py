# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.systemd_release: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import tempfile

from ansible_collections.shipit.deploy.plugins.module_utils import _files, _ledger, _release

UNIT_DIR = "/etc/systemd/system"
NOLOGIN = "/usr/sbin/nologin"
# Unpacked here first, then renamed to the release id: a release directory is never half unpacked.
PARTIAL = ".{}.partial"


def env_file_text(variables):
    """A systemd environment file: one KEY="value" line per variable, quotes and backslashes escaped."""
    lines = []
    for key, value in sorted(variables.items()):
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines)


class Release(_release.Releases):
    """A release of a systemd service: staged (state=present), then made live (state=live)."""

    # ---- state=present ----------------------------------------------------------------------------------
    def stage(self):
        p = self.p
        if not (p["user"] and p["group"]):
            self.fail("state=present needs user and group")
        if p["env_content"] is not None and not p["env_file"]:
            self.fail("env_content needs env_file")
        if self.release_id:
            self.check_release_source()
        gid = self.ensure_group(p["group"])
        uid = self.ensure_user(p["user"], p["group"], gid)
        for path, owner, group, mode in self.layout(uid, gid):
            self.ensure_dir(path, owner, group, mode)
        env_changed = p["env_content"] is not None and self.ensure_file(p["env_file"], p["env_content"], 0, gid, 0o640)
        unpacked = False
        if self.release_id:
            unpacked = self.ensure_release()
            if not os.path.lexists(self.current) and self.change(f"pointed current at the first release {self.release_id}"):
                os.symlink(os.path.join("releases", self.release_id), self.current)
        result = {}
        if self.slot:
            result = self.stage_slot(gid)
        unit_changed = p["unit_content"] is not None and self.ensure_unit(p["unit"], p["unit_content"])
        return dict(unpacked=unpacked, env_changed=env_changed, unit_changed=unit_changed, **result)

    def stage_slot(self, gid):
        """Link the slot to the release and write its environment file."""
        self.ensure_dir(self.slots_dir, 0, 0, 0o755)
        if self.release_id:
            self.link_slot(self.slot, self.release_id)
        env_changed = self.p["slot_env"] is not None and self.ensure_file(
            self.slot_env_file(self.slot), env_file_text(self.p["slot_env"]), 0, gid, 0o640)
        return dict(slot=self.slot, slot_release=self.slot_target(self.slot), slot_env_changed=env_changed)

    def check_release_source(self):
        if os.path.isdir(self.release_dir) or self.check:
            return
        src = self.p["src"]
        if not src:
            self.fail(f"release {self.release_id} is not on the host ({self.release_dir} is missing) and no "
                      "artifact was given to unpack: nothing was changed")
        if not os.path.isfile(src):
            self.fail(f"the release tarball {src} is missing on the host: nothing was changed")

    def layout(self, uid, gid):
        shared = os.path.join(self.app_dir, "shared")
        dirs = [(self.app_dir, 0, 0, 0o755), (self.releases, 0, 0, 0o755), (shared, 0, 0, 0o755),
                (os.path.join(shared, "config"), 0, gid, 0o750)]
        return dirs + [(os.path.join(shared, name), uid, gid, 0o750) for name in self.p["shared_dirs"]]

    def ensure_group(self, name):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
        if self.change(f"created group {name}"):
            self.run(["groupadd", "--system", name], f"creating the group {name}")
            return grp.getgrnam(name).gr_gid
        return -1

    def ensure_user(self, name, group, gid):
        home = self.app_dir
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if self.change(f"created user {name}"):
                self.run(["useradd", "--system", "--gid", group, "--shell", NOLOGIN, "--home-dir", home,
                          "--no-create-home", name], f"creating the user {name}")
                return pwd.getpwnam(name).pw_uid
            return -1
        if (entry.pw_gid, entry.pw_shell, entry.pw_dir) != (gid, NOLOGIN, home) and self.change(f"updated user {name}"):
            self.run(["usermod", "--gid", group, "--shell", NOLOGIN, "--home", home, name], f"updating the user {name}")
        return entry.pw_uid

    def ensure_release(self):
        """Unpack the release when it is not on the host yet, and link the shared directories into it."""
        unpacked = False
        if not os.path.isdir(self.release_dir):
            unpacked = True
            if self.change(f"unpacked the release {self.release_id}"):
                partial = os.path.join(self.releases, PARTIAL.format(self.release_id))
                shutil.rmtree(partial, ignore_errors=True)
                os.mkdir(partial, 0o755)
                try:
                    # Owned by root whatever the tarball says; GNU tar refuses members outside the directory.
                    self.run(["tar", "--extract", "--no-same-owner", "--file", self.p["src"], "--directory", partial],
                             "unpacking the release")
                    os.chmod(partial, 0o755)
                    self.link_shared(partial)
                    os.rename(partial, self.release_dir)
                except BaseException:  # fail_json exits: leave no half-unpacked release behind
                    shutil.rmtree(partial, ignore_errors=True)
                    raise
                _files.fsync_dir(self.releases)
            return unpacked
        self.link_shared(self.release_dir)
        return unpacked

    def link_shared(self, release_dir):
        for name in self.p["shared_dirs"]:
            link = os.path.join(release_dir, name)
            target = os.path.join(self.app_dir, "shared", name)
            if os.path.islink(link) and os.readlink(link) == target:
                continue
            if os.path.isdir(link) and not os.path.islink(link):
                if os.listdir(link):
                    self.fail(f"the release has its own {name}/ with files in it, but {name} is a shared directory "
                              f"(shared_dirs): remove {name}/ from the artifact or from shared_dirs")
                if self.change(f"linked shared/{name} into the release"):
                    os.rmdir(link)
                    os.symlink(target, link)
                continue
            if self.change(f"linked shared/{name} into the release"):
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(target, link)

    def ensure_unit(self, name, content):
        def verify(candidate_content):
            # systemd-analyze wants a file named like a unit: verify a copy under the real name first (a template
            # as its instance of the slot, whose directory exists now).
            with tempfile.TemporaryDirectory(prefix="shipit-unit.") as scratch:
                candidate = os.path.join(scratch, self.instance(self.slot) if self.slot else name)
                with open(candidate, "w", encoding="utf-8") as handle:
                    handle.write(candidate_content)
                rc, out, err = self.module.run_command(["systemd-analyze", "verify", candidate])
            if rc != 0:
                self.fail(f"the unit {name} does not verify, so it was not installed: {(err or out).strip()[-2000:]}")
        return self.ensure_file(os.path.join(UNIT_DIR, name), content, 0, 0, 0o644, validate=verify)

    # ---- slots ------------------------------------------------------------------------------------------
    @property
    def slot(self):
        return self.p["slot"]

    @property
    def slots_dir(self):
        return os.path.join(self.app_dir, "slots")

    def instance(self, slot):
        return self.p["unit"].replace("@.", f"@{slot}.", 1)

    def slot_env_file(self, slot):
        return os.path.join(self.app_dir, "shared", "config", f"slot-{slot}.env")

    def slot_target(self, slot):
        link = os.path.join(self.slots_dir, slot)
        return os.path.basename(os.readlink(link).rstrip("/")) if os.path.islink(link) else None

    def link_slot(self, slot, release_id):
        """Point slots/<slot> at the release by rename(2) of a prepared link; True when it moved (or would)."""
        if self.slot_target(slot) == release_id:
            return False
        if self.change(f"linked slot {slot} to releases/{release_id}"):
            nxt = os.path.join(self.slots_dir, f".{slot}.next")
            if os.path.lexists(nxt):
                os.unlink(nxt)
            os.symlink(os.path.join("..", "releases", release_id), nxt)
            os.replace(nxt, os.path.join(self.slots_dir, slot))
            _files.fsync_dir(self.slots_dir)
        return True

    def start_slot(self):
        """(Re)start a slot on its release: the slot that runs the release already, else the given slot, linked
        to it first."""
        p = self.p
        slot, linked = self.slot, False
        if self.release_id:
            if not (os.path.isdir(self.release_dir) or (self.check and p["check_mode_staged"])):
                self.fail(f"release {self.release_id} is not on the host ({self.release_dir} is missing): "
                          "nothing was changed")
            running = [s for s in _release.SLOTS if self.slot_target(s) == self.release_id
                       and self.unit_state(self.instance(s)).get("ActiveState") == "active"]
            if running and not p["restart"]:
                slot = running[0]
            else:
                self.ensure_dir(self.slots_dir, 0, 0, 0o755)
                linked = self.link_slot(slot, self.release_id)
        if self.slot_target(slot) is None and not self.check:
            self.fail(f"slot {slot} links to no release, so it cannot be started: nothing was changed")
        restarted = self.ensure_service(self.instance(slot), linked or p["restart"], enable=False)
        return dict(slot=slot, slot_release=self.release_id or self.slot_target(slot), restarted=restarted)

    def stop_slot(self):
        unit = self.instance(self.slot)
        state = self.unit_state(unit)
        stopped = False
        if state.get("UnitFileState") == "enabled" and self.change(f"disabled {unit}"):
            self.run(["systemctl", "disable", unit], f"disabling {unit}")
        if state.get("ActiveState") not in ("inactive", "failed") and self.change(f"stopped {unit}"):
            self.run(["systemctl", "stop", unit], f"stopping {unit}")
            stopped = True
        return dict(slot=self.slot, slot_release=self.slot_target(self.slot), stopped=stopped)

    # ---- state=migrated ---------------------------------------------------------------------------------
    def migrate(self):
        """Run the release's migration command as the service user, with the service's environment file (so
        its secrets never pass through the module's arguments), in the release's directory."""
        p = self.p
        if not (self.release_id and p["migrate_argv"] and p["user"] and p["group"] and p["env_file"]):
            self.fail("state=migrated needs release_id, migrate_argv, user, group and env_file: nothing was run")
        if self.check:
            self.change(f"would run the migration of release {self.release_id}")
            return dict(migration_rc=None)
        if not os.path.isdir(self.release_dir):
            self.fail(f"release {self.release_id} is not on the host ({self.release_dir} is missing): nothing was run")
        argv = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", f"--uid={p['user']}", f"--gid={p['group']}",
                f"--property=EnvironmentFile={p['env_file']}", f"--working-directory={self.release_dir}", "--",
                os.path.join(self.release_dir, p["migrate_argv"][0]), *p["migrate_argv"][1:]]
        self.change(f"ran the migration of release {self.release_id}")
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            lines = [line.strip() for line in f"{err}\n{out}".splitlines() if line.strip()]
            last_words = " / ".join(lines[-3:])[:500] or "it printed nothing"
            self.fail(f"the migration of release {self.release_id} failed (exit {rc}): {last_words}", migration_rc=rc)
        return dict(migration_rc=rc)

    # ---- state=live -------------------------------------------------------------------------------------
    def make_live(self):
        p = self.p
        staged = not self.release_id or os.path.isdir(self.release_dir) or (self.check and p["check_mode_staged"])
        if not staged:
            self.fail(f"release {self.release_id} is not on the host ({self.release_dir} is missing): "
                      "nothing was changed")
        switched = bool(self.release_id) and self.switch_current()
        if self.slot:
            # The slot serves already (the proxy moved the traffic to it): it only starts at boot from now on.
            restarted = False
            for slot in _release.SLOTS:
                self.ensure_enabled(self.instance(slot), slot == self.slot)
        else:
            restarted = self.ensure_service(p["unit"], switched or p["restart"])
        removed, pruned = self.prune() if p["keep_releases"] is not None and self.release_id else ([], [])
        result = dict(slot=self.slot, slot_release=self.slot_target(self.slot)) if self.slot else {}
        return dict(switched=switched, restarted=restarted, removed_releases=removed, pruned_in_ledger=pruned, **result)

    def ensure_enabled(self, unit, enabled):
        state = self.unit_state(unit).get("UnitFileState")
        if enabled and state != "enabled" and self.change(f"enabled {unit}"):
            self.run(["systemctl", "enable", unit], f"enabling {unit}")
        if not enabled and state == "enabled" and self.change(f"disabled {unit}"):
            self.run(["systemctl", "disable", unit], f"disabling {unit}")

    def unit_state(self, unit):
        out = self.run(["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState,NeedDaemonReload",
                        unit], f"reading the state of {unit}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def ensure_service(self, unit, restart, enable=True):
        state = self.unit_state(unit)
        # A unit file installed or changed since systemd last read it (also after an interrupted run).
        if (state.get("LoadState") == "not-found" or state.get("NeedDaemonReload") == "yes") \
                and self.change("reloaded systemd"):
            self.run(["systemctl", "daemon-reload"], "reloading systemd")
        if enable and state.get("UnitFileState") != "enabled" and self.change(f"enabled {unit}"):
            self.run(["systemctl", "enable", unit], f"enabling {unit}")
        if not restart and state.get("ActiveState") == "active":
            return False
        if self.change(f"{'restarted' if restart else 'started'} {unit}"):
            # A crash-looping release may have tripped the start limit: clear it so this start is not refused.
            rc, _out, err = self.module.run_command(["systemctl", "reset-failed", unit])
            if rc != 0 and "not loaded" not in err:
                self.fail(f"clearing the start failure of {unit} failed: {err.strip()}")
            self.run(["systemctl", "restart" if restart else "start", unit], f"starting {unit}")
        return True

    def prune(self):
        """(releases removed, releases recorded pruned in the ledger)."""
        keep = max(self.p["keep_releases"], 1)
        if not os.path.isdir(self.releases):  # check mode of a first deploy
            return [], []
        names = sorted(name for name in os.listdir(self.releases)
                       if not name.startswith(".") and os.path.isdir(os.path.join(self.releases, name)))
        protected = set(self.p["protected_releases"]) | {self.release_id, self.current_target()}
        protected |= {self.slot_target(slot) for slot in _release.SLOTS} if self.slot else set()
        doomed = [name for name in names[:-keep] if name not in protected]
        # Unpacks a killed run left behind (the deploy lock makes sure no other run is unpacking now).
        leftovers = [name for name in os.listdir(self.releases) if name.startswith(".") and name.endswith(".partial")]
        for name in doomed + leftovers:
            if self.change(f"removed releases/{name}"):
                shutil.rmtree(os.path.join(self.releases, name))
        return doomed, self.record_pruned(doomed, set(names) - set(doomed))

    def record_pruned(self, removed, present):
        app = self.p["ledger_app"]
        if not app:
            return []
        try:
            marked = _ledger.record_pruned(self.p["ledger_dir"], app, removed, present, self.check)
        except (_ledger.LedgerError, OSError) as exc:
            self.fail(f"recording the removed releases of {app} as pruned in its ledger failed: {exc}",
                      removed_releases=removed)
        if marked:
            self.change(f"recorded {', '.join(marked)} as pruned in the ledger of {app}")
        return marked


SPEC = dict(
    argument_spec=dict(
        state=dict(type="str", choices=["present", "migrated", "live", "started", "stopped"], default="present"),
        slot=dict(type="str", choices=list(_release.SLOTS)),
        slot_env=dict(type="dict"),
        app_dir=dict(type="path", required=True),
        release_id=dict(type="str"),
        unit=dict(type="str", required=True),
        host_label=dict(type="str"),
        src=dict(type="path"),
        # Taken by the action plugin, which copies it to the host and passes its path as src.
        artifact=dict(type="path"),
        user=dict(type="str"),
        group=dict(type="str"),
        shared_dirs=dict(type="list", elements="str", default=[]),
        env_file=dict(type="path"),
        env_content=dict(type="str", no_log=True),
        unit_content=dict(type="str"),
        migrate_argv=dict(type="list", elements="str"),
        restart=dict(type="bool", default=False),
        check_mode_staged=dict(type="bool", default=False),
        keep_releases=dict(type="int"),
        protected_releases=dict(type="list", elements="str", default=[]),
        ledger_app=dict(type="str"),
        ledger_dir=dict(type="path", default="/var/lib/shipit"),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    if module.params["release_id"] is not None:
        _release.check_plain_name(module, "release_id", module.params["release_id"])
    for name in module.params["shared_dirs"]:
        _release.check_plain_name(module, "shared_dirs", name)
    state = module.params["state"]
    if state in ("started", "stopped") and not module.params["slot"]:
        module.fail_json(msg=f"state={state} needs slot: nothing was changed")
    if module.params["slot"] and "@." not in module.params["unit"]:
        module.fail_json(msg=f"with slot, unit must be a template unit such as app@.service, got {module.params['unit']}: "
                             "nothing was changed")
    release = Release(module)
    result = {"present": release.stage, "migrated": release.migrate, "live": release.make_live, "started": release.start_slot,
              "stopped": release.stop_slot}[state]()
    module.exit_json(changed=bool(release.changes), changes=release.changes, release_dir=release.release_dir, **result)
