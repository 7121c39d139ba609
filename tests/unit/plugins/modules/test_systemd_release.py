"""systemd_release runs as a real collection module (ansible ad-hoc on localhost, as root, through its action
plugin). Staging is checked here on the file system; making a release live needs systemd as PID 1, which the
Molecule scenarios systemd_service and safety have."""

import grp
import io
import json
import os
import pwd
import secrets
import stat
import subprocess
import tarfile

import pytest

from test_deploy_lock import run_module


def make_tarball(path, members):
    """A gzipped tarball of {name: content}; a content of None is a directory."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 4242
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = content.encode()
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture()
def account():
    """A throwaway system user and group, for the module to create; removed afterwards."""
    name = "shipit-ut-" + secrets.token_hex(3)
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)
    subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.fixture()
def stage_args(tmp_path, account):
    artifact = make_tarball(tmp_path / "app-1.0.0.tar.gz", {
        "bin": None, "bin/app": "#!/bin/sh\necho 1.0.0\n", "RELEASE.json": '{"version": "1.0.0"}'})
    app_dir = tmp_path / "srv" / "app"
    return {"state": "present", "app_dir": str(app_dir), "release_id": "20261125T100000Z",
            "unit": f"{account}.service", "host_label": "web1", "artifact": artifact, "user": account,
            "group": account, "shared_dirs": ["data"], "env_file": str(app_dir / "shared/config/app.env"),
            "env_content": "TOKEN=\"s3cret-canary\"\n"}


def mode_owner(path):
    st = os.lstat(path)
    return oct(stat.S_IMODE(st.st_mode)), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def test_stage_creates_user_layout_environment_and_release(tmp_path, stage_args, account):
    (tmp_path / "srv").mkdir()
    result = run_module("systemd_release", stage_args)
    assert not result.get("failed"), result
    assert result["changed"] and result["unpacked"] and result["env_changed"] and not result["unit_changed"]
    user = pwd.getpwnam(account)
    assert (user.pw_shell, user.pw_dir) == ("/usr/sbin/nologin", stage_args["app_dir"])
    assert grp.getgrgid(user.pw_gid).gr_name == account

    app = tmp_path / "srv" / "app"
    release = app / "releases" / "20261125T100000Z"
    assert mode_owner(app) == ("0o755", "root", "root")
    assert mode_owner(app / "shared" / "config") == ("0o750", "root", account)
    assert mode_owner(app / "shared" / "data") == ("0o750", account, account)
    assert mode_owner(app / "shared" / "config" / "app.env") == ("0o640", "root", account)
    assert (app / "shared" / "config" / "app.env").read_text() == 'TOKEN="s3cret-canary"\n'
    # Unpacked owned by root whatever the tarball says, modes kept; shared data linked in.
    assert mode_owner(release / "bin" / "app") == ("0o755", "root", "root")
    assert os.readlink(release / "data") == str(app / "shared" / "data")
    # First deploy: current points at the release (the unit needs it to verify).
    assert os.readlink(app / "current") == "releases/20261125T100000Z"
    assert sorted(os.listdir(app / "releases")) == ["20261125T100000Z"]
    # The environment is never printed.
    assert "s3cret-canary" not in repr(result)


def test_stage_again_changes_nothing_and_check_mode_changes_nothing(tmp_path, stage_args):
    (tmp_path / "srv").mkdir()
    assert run_module("systemd_release", stage_args)["changed"]
    again = run_module("systemd_release", stage_args)
    assert not again.get("failed") and again["changed"] is False and again["changes"] == [], again

    (tmp_path / "srv" / "app" / "shared" / "config" / "app.env").write_text("drifted\n")
    before = sorted(str(p) for p in (tmp_path / "srv").rglob("*"))
    checked = run_module("systemd_release", dict(stage_args, release_id="20261125T110000Z"), check=True)
    assert checked["changed"] and checked["unpacked"] and checked["env_changed"], checked
    assert sorted(str(p) for p in (tmp_path / "srv").rglob("*")) == before
    assert (tmp_path / "srv" / "app" / "shared" / "config" / "app.env").read_text() == "drifted\n"


def test_release_not_on_host_without_artifact_is_refused_before_any_change(tmp_path, stage_args):
    args = dict(stage_args)
    del args["artifact"]
    result = run_module("systemd_release", args)
    assert result["failed"] and "release 20261125T100000Z is not on the host" in result["msg"], result
    assert "nothing was changed" in result["msg"] and result["msg"].startswith("web1: ")
    assert not (tmp_path / "srv").exists()

    live = run_module("systemd_release", {"state": "live", "app_dir": stage_args["app_dir"],
                                          "release_id": "20261125T100000Z", "unit": "x.service"})
    assert live["failed"] and "is not on the host" in live["msg"] and "nothing was changed" in live["msg"]


def test_tarball_cannot_write_outside_its_release(tmp_path, stage_args):
    (tmp_path / "srv").mkdir()
    evil = make_tarball(tmp_path / "evil.tar.gz", {"bin": None, "bin/app": "x", "../../escaped": "x"})
    result = run_module("systemd_release", dict(stage_args, artifact=evil))
    assert result["failed"] and "unpacking the release failed" in result["msg"], result
    assert not (tmp_path / "srv" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert os.listdir(tmp_path / "srv" / "app" / "releases") == []


def test_artifact_with_files_in_a_shared_directory_is_refused(tmp_path, stage_args):
    (tmp_path / "srv").mkdir()
    clash = make_tarball(tmp_path / "clash.tar.gz", {"data": None, "data/seed.db": "x"})
    result = run_module("systemd_release", dict(stage_args, artifact=clash))
    assert result["failed"] and "has its own data/ with files in it" in result["msg"], result
    # Nothing half-unpacked is left, nor made current.
    assert os.listdir(tmp_path / "srv" / "app" / "releases") == []
    assert not os.path.lexists(tmp_path / "srv" / "app" / "current")


def test_unit_that_does_not_verify_is_not_installed(tmp_path, stage_args, account):
    (tmp_path / "srv").mkdir()
    unit = f"/etc/systemd/system/{account}.service"
    result = run_module("systemd_release", dict(stage_args, unit_content="[Service]\nExecStart=relative/path\n"))
    assert result["failed"] and f"the unit {account}.service does not verify, so it was not installed" in result["msg"]
    assert not os.path.exists(unit)


def test_bad_names_are_refused(stage_args):
    for key, value in (("release_id", "../x"), ("shared_dirs", ["../etc"])):
        result = run_module("systemd_release", dict(stage_args, **{key: value}))
        assert result["failed"] and "nothing was changed" in result["msg"], (key, result)


def test_releases_removed_by_keep_releases_are_recorded_pruned_in_the_ledger(tmp_path, monkeypatch):
    # state=live restarts the service: a stand-in systemctl (first on PATH) answers for systemd, which is not PID 1
    # here; the prune that follows is real.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text('#!/bin/sh\n[ "$1" = show ] && printf "LoadState=loaded\\nActiveState=active\\n'
                                       'UnitFileState=enabled\\nNeedDaemonReload=no\\n"\nexit 0\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    app = tmp_path / "srv" / "pulse"
    ids = [f"2026112{n}T000000Z" for n in range(1, 6)]
    for release_id in ids:
        (app / "releases" / release_id).mkdir(parents=True)
    os.symlink("releases/" + ids[3], app / "current")
    ledger_dir = tmp_path / "ledgers"
    ledger = ledger_dir / "pulse" / "ledger.json"
    ledger.parent.mkdir(parents=True)
    entries = [{"release_id": "20261110T000000Z", "version": "0.9.0", "status": "good"}]  # gone long ago
    entries += [{"release_id": r, "version": f"1.{n}.0", "status": "good"} for n, r in enumerate(ids[:4], 1)]
    entries[2]["status"] = "failed"
    entries[2]["reason"] = "HTTP 503"
    entries[4]["status"] = "live"
    ledger.write_text(json.dumps({"ledger_version": 1, "app": "pulse", "releases": entries}))
    args = {"state": "live", "app_dir": str(app), "release_id": ids[4], "unit": "pulse.service", "keep_releases": 2,
            "protected_releases": [ids[0]], "ledger_app": "pulse", "ledger_dir": str(ledger_dir)}

    predicted = run_module("systemd_release", args, check=True)
    assert not predicted.get("failed"), predicted
    assert predicted["removed_releases"] == [ids[1], ids[2]]
    assert predicted["pruned_in_ledger"] == ["20261110T000000Z", ids[1], ids[2]]
    assert json.loads(ledger.read_text())["releases"] == entries and len(os.listdir(app / "releases")) == 5

    result = run_module("systemd_release", args)
    assert not result.get("failed"), result
    assert sorted(os.listdir(app / "releases")) == [ids[0], ids[3], ids[4]]
    assert result["pruned_in_ledger"] == ["20261110T000000Z", ids[1], ids[2]]
    assert any("as pruned in the ledger of pulse" in change for change in result["changes"])
    after = {e["release_id"]: e for e in json.loads(ledger.read_text())["releases"]}
    assert {r: e["status"] for r, e in after.items()} == {
        "20261110T000000Z": "pruned", ids[0]: "good", ids[1]: "pruned", ids[2]: "pruned", ids[3]: "live"}
    assert (after[ids[1]]["pruned_from"], after[ids[1]]["reason"], after[ids[1]]["version"]) == ("failed", "HTTP 503",
                                                                                                 "1.2.0")
    assert after[ids[2]]["pruned_from"] == "good"


def stand_in_systemctl(tmp_path, monkeypatch, active_units=()):
    """A systemctl first on PATH that logs its calls; the units named are active, every other one inactive."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "systemctl.log"
    active = " ".join(active_units)
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        'if [ "$1" = show ]; then unit=$(eval echo \\${$#}); state=inactive\n'
        f'  for u in {active}; do [ "$u" = "$unit" ] && state=active; done\n'
        '  printf "LoadState=loaded\\nActiveState=%s\\nUnitFileState=disabled\\nNeedDaemonReload=no\\n" "$state"; fi\n'
        'exit 0\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return lambda: [line.split() for line in log.read_text().splitlines() if not line.startswith("show")] \
        if log.exists() else []


def test_a_slot_is_linked_to_the_release_and_gets_its_port(tmp_path, stage_args, account):
    (tmp_path / "srv").mkdir()
    args = dict(stage_args, unit=f"{account}@.service", slot="green", slot_env={"PULSE_PORT": 18081})
    result = run_module("systemd_release", args)
    assert not result.get("failed"), result
    app = tmp_path / "srv" / "app"
    assert os.readlink(app / "slots" / "green") == "../releases/20261125T100000Z"
    assert (result["slot"], result["slot_release"], result["slot_env_changed"]) == ("green", "20261125T100000Z", True)
    assert (app / "shared" / "config" / "slot-green.env").read_text() == 'PULSE_PORT="18081"\n'
    assert mode_owner(app / "shared" / "config" / "slot-green.env") == ("0o640", "root", account)
    again = run_module("systemd_release", args)
    assert not again["changed"], again


def test_starting_a_slot_restarts_it_unless_it_runs_the_release_already(tmp_path, monkeypatch):
    app = tmp_path / "srv" / "pulse"
    for release_id in ("20261121T000000Z", "20261122T000000Z"):
        (app / "releases" / release_id).mkdir(parents=True)
    (app / "slots").mkdir()
    os.symlink("../releases/20261121T000000Z", app / "slots" / "blue")
    calls = stand_in_systemctl(tmp_path, monkeypatch, active_units=["pulse@blue.service"])
    args = {"state": "started", "app_dir": str(app), "unit": "pulse@.service", "slot": "green"}

    # A rollback to the release blue still runs: nothing starts, blue is the slot to move the traffic to.
    result = run_module("systemd_release", dict(args, release_id="20261121T000000Z"))
    assert (result["slot"], result["restarted"], result["changed"]) == ("blue", False, False), result
    assert calls() == []

    # Another release goes to the slot asked for, which (re)starts on it.
    result = run_module("systemd_release", dict(args, release_id="20261122T000000Z"))
    assert (result["slot"], result["restarted"]) == ("green", True), result
    assert os.readlink(app / "slots" / "green") == "../releases/20261122T000000Z"
    assert ["restart", "pulse@green.service"] in calls()

    missing = run_module("systemd_release", dict(args, release_id="20261123T000000Z"))
    assert missing["failed"] and "is not on the host" in missing["msg"] and "nothing was changed" in missing["msg"]


def test_making_a_slot_live_enables_it_alone_and_prune_keeps_both_slots_releases(tmp_path, monkeypatch):
    app = tmp_path / "srv" / "pulse"
    ids = [f"2026112{n}T000000Z" for n in range(1, 6)]
    for release_id in ids:
        (app / "releases" / release_id).mkdir(parents=True)
    (app / "slots").mkdir()
    os.symlink("../releases/" + ids[0], app / "slots" / "blue")
    os.symlink("../releases/" + ids[4], app / "slots" / "green")
    os.symlink("releases/" + ids[0], app / "current")
    calls = stand_in_systemctl(tmp_path, monkeypatch)
    result = run_module("systemd_release", {"state": "live", "app_dir": str(app), "release_id": ids[4],
                                            "unit": "pulse@.service", "slot": "green", "keep_releases": 1})
    assert not result.get("failed"), result
    assert os.readlink(app / "current") == "releases/" + ids[4] and not result["restarted"]
    assert ["enable", "pulse@green.service"] in calls() and not any(c[0] in ("restart", "start") for c in calls())
    # The old slot's release stays: a rollback switches back to it.
    assert sorted(os.listdir(app / "releases")) == [ids[0], ids[4]]

    stopped = run_module("systemd_release", {"state": "stopped", "app_dir": str(app), "unit": "pulse@.service",
                                             "slot": "blue"})
    assert not stopped.get("failed"), stopped
    refused = run_module("systemd_release", {"state": "started", "app_dir": str(app), "unit": "pulse.service",
                                             "slot": "blue"})
    assert refused["failed"] and "template unit" in refused["msg"]


def test_a_migration_runs_through_systemd_run_and_its_failure_names_its_last_words(tmp_path, monkeypatch):
    """systemd-run (which needs systemd as PID 1: the scenarios run the real one) stands in here: it logs its
    options and runs the command after --, as the real one does as the service user."""
    app = tmp_path / "srv" / "pulse"
    release = app / "releases" / "20261125T100000Z"
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "pulse").write_text('#!/bin/sh\necho "migrating to $1"\n[ "$1" = ok ] || { echo "no such table: visits" >&2; exit 4; }\n')
    (release / "bin" / "pulse").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemd-run.log"
    (bin_dir / "systemd-run").write_text(f'#!/bin/sh\necho "$@" >> {log}\nwhile [ "$1" != -- ]; do shift; done\nshift\nexec "$@"\n')
    (bin_dir / "systemd-run").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    args = {"state": "migrated", "app_dir": str(app), "release_id": "20261125T100000Z", "unit": "pulse@.service",
            "host_label": "web1", "user": "pulse", "group": "pulse", "env_file": str(app / "shared/config/pulse.env")}

    result = run_module("systemd_release", dict(args, migrate_argv=["bin/pulse", "ok"]))
    assert not result.get("failed") and result["changed"] and result["migration_rc"] == 0, result
    options = log.read_text().split()
    assert {"--wait", "--pipe", "--uid=pulse", "--gid=pulse", f"--property=EnvironmentFile={args['env_file']}",
            f"--working-directory={release}"} <= set(options), options
    assert options[options.index("--") + 1:] == [f"{release}/bin/pulse", "ok"]

    failed = run_module("systemd_release", dict(args, migrate_argv=["bin/pulse", "broken"]))
    assert failed["failed"] and failed["migration_rc"] == 4, failed
    assert failed["msg"] == ("web1: the migration of release 20261125T100000Z failed (exit 4): "
                             "no such table: visits / migrating to broken"), failed["msg"]

    checked = run_module("systemd_release", dict(args, migrate_argv=["bin/pulse", "broken"]), check=True)
    assert checked["changed"] and checked["migration_rc"] is None and not checked.get("failed"), checked
    assert len(log.read_text().splitlines()) == 2  # check mode ran nothing

    missing = run_module("systemd_release", dict(args, release_id="20261126T000000Z", migrate_argv=["bin/pulse", "ok"]))
    assert missing["failed"] and "is not on the host" in missing["msg"] and "nothing was run" in missing["msg"]
    incomplete = run_module("systemd_release", {k: v for k, v in args.items() if k != "env_file"})
    assert incomplete["failed"] and "needs release_id, migrate_argv, user, group and env_file" in incomplete["msg"]
