"""pulse as a systemd service on a real systemd host: deploy, idempotence, upgrade with migration,
automatic rollback of a broken release, manual rollback, check mode and refused inputs.

Molecule's converge deployed 1.0.0. These tests run in file order, each building on the last: they
drive further runs of the collection's playbooks and check the host independently (HTTP from the host
itself, systemctl, the file system, the SQLite database).
"""

import json
import re
import sys
from pathlib import Path

import pytest

# The scenarios' shared helpers live in molecule/shipit_molecule.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import LEDGER, changed_count, health, ledger, live, main_pid, playbook  # noqa: E402

APP_DIR = "/srv/pulse"
DB = "/srv/pulse/shared/data/pulse.db"
HOST = "shipit-molecule-systemd"

testinfra_hosts = [HOST]


def visits(host):
    return json.loads(host.check_output("curl -s --max-time 5 http://127.0.0.1:8080/visits"))["count"]


def state(host):
    """What must not move when nothing is deployed: current, the releases, the ledger, the process."""
    return (host.file(f"{APP_DIR}/current").linked_to, host.check_output(f"ls {APP_DIR}/releases"),
            host.file(LEDGER).content_string, main_pid(host))


def test_converge_deployed_1_0_0(host):
    body = health(host)
    assert body["status"] == "healthy" and body["version"] == "1.0.0" and body["schema"] == 1
    service = host.service("pulse")
    assert service.is_running and service.is_enabled
    entry = live(host)
    assert entry["version"] == "1.0.0" and entry["checksum"].startswith("sha256:")
    assert host.file(f"{APP_DIR}/current").linked_to == f"{APP_DIR}/releases/{entry['release_id']}"


def test_layout_modes_and_owners(host):
    env_file = host.file(f"{APP_DIR}/shared/config/pulse.env")
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "pulse", 0o640)
    data = host.file(f"{APP_DIR}/shared/data")
    assert (data.user, data.mode) == ("pulse", 0o750)
    release = host.file(f"{APP_DIR}/current/bin/pulse")
    assert release.user == "root" and not release.mode & 0o022, "code must not be writable by the service"
    assert host.file(f"{APP_DIR}/current/data").linked_to == f"{APP_DIR}/shared/data"


def test_unit_is_hardened_and_valid(host):
    host.run_test("systemd-analyze verify /etc/systemd/system/pulse.service")
    out = host.check_output("systemd-analyze security pulse.service --no-pager | tail -1")
    exposure = float(re.search(r"exposure level for pulse.service: ([\d.]+)", out).group(1))
    assert exposure <= 2.0, out
    assert host.check_output("ps -o user= -p %s" % main_pid(host)) == "pulse"


def test_upgrade_to_1_1_0_migrates_once_and_keeps_data(host):
    for _ in range(3):
        host.run_test("curl -sf -X POST http://127.0.0.1:8080/visits")
    assert visits(host) == 3
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    body = health(host)
    assert (body["status"], body["version"], body["schema"]) == ("healthy", "1.1.0", 2)
    assert visits(host) == 3
    applied = host.check_output(f"sqlite3 {DB} 'SELECT version FROM schema_version ORDER BY version'")
    assert applied.split() == ["1", "2"]
    statuses = {e["version"]: e["status"] for e in ledger(host)}
    assert statuses == {"1.0.0": "good", "1.1.0": "live"}


def test_rerun_of_the_same_version_changes_nothing(host):
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changed_count(proc, HOST) == 0
    assert state(host) == before


def test_check_mode_reports_a_new_release_and_changes_nothing(host):
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changed_count(proc, HOST) > 0, "check mode must report the release it would make"
    assert state(host) == before
    assert health(host)["version"] == "1.1.0"


def test_broken_release_is_rolled_back_automatically(host):
    proc = playbook("deploy.yml", "-e", "shipit_version=1.2.0")
    assert proc.returncode != 0
    assert "deliberately broken build" in proc.stdout
    assert "rolled back to 1.1.0 (healthy)" in proc.stdout
    body = health(host)
    assert (body["status"], body["version"]) == ("healthy", "1.1.0")
    assert visits(host) == 3
    failed = [e for e in ledger(host) if e["version"] == "1.2.0"]
    assert [e["status"] for e in failed] == ["failed"]
    assert "HTTP 503" in failed[0]["reason"]
    assert live(host)["version"] == "1.1.0"


def test_manual_rollback_to_a_named_release(host):
    proc = playbook("rollback.yml", "-e", "shipit_rollback_to=1.0.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    body = health(host)
    assert (body["status"], body["version"]) == ("healthy", "1.0.0")
    assert visits(host) == 3
    statuses = {e["version"]: e["status"] for e in ledger(host)}
    assert statuses == {"1.0.0": "live", "1.1.0": "rolled_back", "1.2.0": "failed"}


def test_rollback_without_a_good_release_is_refused(host):
    before = state(host)
    proc = playbook("rollback.yml")
    assert proc.returncode != 0
    assert "there is no good release of pulse to roll back to" in proc.stdout
    assert state(host) == before


@pytest.mark.parametrize("target", ["9.9.9", "20200101T000000Z"])
def test_rollback_to_an_unknown_release_is_refused(host, target):
    before = state(host)
    proc = playbook("rollback.yml", "-e", f"shipit_rollback_to={target}")
    assert proc.returncode != 0
    assert f"release {target} of pulse is not in the ledger" in proc.stdout
    assert state(host) == before


def test_history_prints_the_ledger(host):
    proc = playbook("history.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for version, status in (("1.0.0", "live"), ("1.1.0", "rolled_back"), ("1.2.0", "failed")):
        assert re.search(rf"{re.escape(version)}\s+{status}", proc.stdout), proc.stdout


@pytest.mark.parametrize("version", ["../../etc", "1.0.0/../x", ""])
def test_bad_versions_are_refused_before_any_change(host, version):
    before = state(host)
    proc = playbook("deploy.yml", "-e", json.dumps({"shipit_version": version}))
    assert proc.returncode != 0
    assert "shipit_version is required and must be a plain version string" in proc.stdout
    assert state(host) == before


def test_missing_artifact_is_refused_before_any_change(host):
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=7.7.7")
    assert proc.returncode != 0
    assert "the artifact of pulse 7.7.7 is missing" in proc.stdout
    assert state(host) == before
