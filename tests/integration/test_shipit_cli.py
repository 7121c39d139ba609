"""The shipit command against the lab, for real: ansible-runner, the collection's playbooks, SSH to a lab host.

Only the lab host ci1 is touched (--limit ci1 on every run): web1 and web2 belong to other tests. Each test sets
up the state it starts from, so they run in any order.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lab import hosts as lab_hosts  # noqa: E402

pytestmark = pytest.mark.lab
HOST = "ci1"
BIN = Path(sys.executable).parent
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text())
BUILD = REPO / "examples" / "pulse" / "build.py"


def run(*argv, timeout=900, env=None, cwd=REPO):
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def ssh(command, timeout=120):
    return run(*lab_hosts.ssh_argv(lab_hosts.lab_hosts()[HOST], command), timeout=timeout)


class Shipit:
    """Runs `shipit ... --limit ci1` into a fresh run directory and reads its report."""

    def __init__(self, base):
        self.base = base
        self.count = 0

    def __call__(self, *args, env=None, cwd=REPO):
        self.count += 1
        run_dir = self.base / f"run-{self.count}-{args[0]}"
        proc = run(BIN / "python", "-m", "shipit", *args, "--limit", HOST, "--plain", "--artifacts-dir", run_dir,
                   env={"PYTHONPATH": str(REPO), **(env or {})}, cwd=cwd)
        report_path = run_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        return proc, report, run_dir


@pytest.fixture(scope="module")
def lab():
    proc = run(sys.executable, "-m", "lab", "up", "--hosts", HOST, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for version, flags in (("1.0.0", []), ("1.1.0", []), ("1.2.0", ["--broken"])):
        build = run(sys.executable, BUILD, "tarball", "--version", version, *flags)
        assert build.returncode == 0, build.stderr


@pytest.fixture()
def shipit(lab, tmp_path):
    return Shipit(tmp_path)


def ledger():
    proc = ssh("sudo cat /var/lib/shipit/pulse/ledger.json")
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def live(book):
    return next((r for r in (book or {}).get("releases", []) if r["status"] == "live"), None)


def host_state():
    """What a refused run must leave alone: the ledger, where current points, the service's start time."""
    current = ssh("readlink /srv/pulse/current").stdout.strip()
    # The lab's pulse runs in two slots behind the front proxy: both slots' start times.
    started = ssh("systemctl show -p ActiveEnterTimestampMonotonic pulse@blue.service pulse@green.service").stdout.strip()
    return ledger(), current, started


def health():
    proc = ssh("curl -s --max-time 5 http://127.0.0.1:8080/health")
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def valid(report):
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)]
    assert not errors, errors
    return report


def ensure_live(shipit, version):
    proc, report, _ = shipit("deploy", "--env", "lab", "--version", version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert live(ledger())["version"] == version


def test_a_real_deploy(shipit):
    ensure_live(shipit, "1.0.0")
    proc, report, run_dir = shipit("deploy", "--env", "lab", "--version", "1.1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    valid(report)
    assert (report["exit_code"], report["outcome"], report["version"]) == (0, "ok", "1.1.0")
    assert live(ledger())["release_id"] == report["release_id"]
    assert health()["version"] == "1.1.0"
    [host] = report["hosts"]
    stages = {s["name"]: s for s in host["stages"]}
    assert stages["switch"]["status"] == "changed" and stages["verify"]["status"] == "ok"
    assert all(s["duration"] >= 0 for s in host["stages"])
    # Progress as it happened: one line per stage of the host, with the time since the start.
    for name in ("preflight", "release", "migrate", "switch", "verify", "record"):
        assert any(f" {HOST} " in f" {line} " and f" {name} " in line for line in proc.stdout.splitlines()), name
    # The runner's artifacts are kept beside the report.
    artifacts = Path(report["runner"]["artifact_dir"])
    assert (artifacts / "stdout").stat().st_size > 0 and any((artifacts / "job_events").iterdir())
    assert (artifacts / "rc").read_text().strip() == "0"
    assert (run_dir / "report.md").read_text().startswith("## ✅ shipit deploy pulse 1.1.0 → lab: ok (exit 0)")


def test_a_rolled_back_deploy_exits_4_and_names_the_failing_assertion(shipit):
    ensure_live(shipit, "1.1.0")
    proc, report, run_dir = shipit("deploy", "--env", "lab", "--version", "1.2.0")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    valid(report)
    failing = report["failing_health_check"]
    assert (failing["host"], failing["assertion"], failing["reason"]) == (HOST, "status in [200]", "got 503")
    [host] = report["hosts"]
    assert host["rollback"]["to_version"] == "1.1.0" and host["rollback"]["healthy"] is True
    assert "status in [200] failed: got 503" in report["rollback_reason"]
    assert "status in [200]: got 503" in (run_dir / "report.md").read_text()
    book = ledger()
    assert live(book)["version"] == "1.1.0"
    assert [r["status"] for r in book["releases"] if r["release_id"] == report["release_id"]] == ["failed"]
    assert health()["version"] == "1.1.0"


def test_a_refused_deploy_exits_1_and_changes_nothing(shipit):
    ensure_live(shipit, "1.1.0")
    before = host_state()
    proc, report, _ = shipit("deploy", "--env", "lab", "--version", "1.1.0;touch /tmp/pwned")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    valid(report)
    assert report["hosts"] == [] and "plain version string" in report["plan"]["message"]
    proc, report, _ = shipit("deploy", "--env", "lab", "--version", "9.9.9")  # never built
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert valid(report)["totals"]["changed_hosts"] == 0
    assert "pulse-9.9.9.tar.gz" in report["hosts"][0]["failure"]["message"]
    assert host_state() == before
    assert ssh("test -e /tmp/pwned").returncode == 1


def _copy_lab_inventory(inventory):
    """The lab inventory with ci1 only, somewhere else: its relative paths made absolute."""
    shutil.copytree(REPO / "inventories" / "lab", inventory)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"lab": {
        "vars": {"ansible_host": "127.0.0.1", "ansible_user": "deploy"},
        "children": {"app": {"hosts": {HOST: dict(lab_hosts.lab_hosts()[HOST])}}}}}}}))
    for path in inventory.rglob("*.yml"):
        path.write_text(path.read_text().replace("{{ inventory_dir }}/../..", str(REPO)))


def _canary_inventory(root, secret, password):
    """A copy of the lab inventory, ci1 only, with a secret in a vault-encrypted group_vars file that the
    deploy really uses (in the app's environment file)."""
    inventory = root / "inventories" / "canary"
    _copy_lab_inventory(inventory)
    pulse = inventory / "group_vars" / "app" / "pulse.yml"
    config = yaml.safe_load(pulse.read_text())
    config["systemd_service_env"]["PULSE_CANARY_TOKEN"] = "{{ pulse_canary_token }}"
    pulse.write_text(yaml.safe_dump(config, sort_keys=False))
    vault = inventory / "group_vars" / "app" / "vault.yml"
    vault.write_text(yaml.safe_dump({"pulse_canary_token": secret}))
    password_file = root / "vault-password"
    password_file.write_text(password + "\n")
    proc = run(BIN / "ansible-vault", "encrypt", "--vault-password-file", password_file, vault)
    assert proc.returncode == 0, proc.stderr
    password_file.unlink()
    assert secret not in vault.read_text()
    return root / "inventories"


def test_no_secret_reaches_the_report_the_logs_or_the_artifacts(shipit, tmp_path):
    ensure_live(shipit, "1.1.0")
    secret = f"CANARY-{uuid.uuid4().hex}"
    password = f"vault-pw-{uuid.uuid4().hex}"
    inventories = _canary_inventory(tmp_path / "project", secret, password)
    proc, report, run_dir = shipit("deploy", "--env", "canary", "--version", "1.1.0", "--inventories", inventories,
                                   env={"SHIPIT_VAULT_PASSWORD": password})
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        valid(report)
        # The secret was used: it is in the app's environment file on the host.
        assert secret in ssh("sudo cat /srv/pulse/shared/config/pulse.env").stdout
        # ...and nowhere in what the run left: report, progress output, runner inputs and artifacts.
        assert secret not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        assert len(files) > 20
        for path in files:
            data = path.read_bytes()
            assert secret.encode() not in data, f"the canary secret leaked into {path}"
            assert password.encode() not in data, f"the vault password leaked into {path}"
        # The vault password went through a private temporary file that is gone.
        command = json.loads((Path(report["runner"]["artifact_dir"]) / "command").read_text())["command"]
        password_path = Path(command[command.index("--vault-password-file") + 1])
        assert not password_path.exists() and not str(password_path).startswith(str(run_dir))
    finally:
        ensure_live(shipit, "1.1.0")  # the lab's own environment file again (no canary on the host)
        assert secret not in ssh("sudo cat /srv/pulse/shared/config/pulse.env").stdout


BAD_MIGRATION = "1.2.1-badmigrate"


def _build_bad_migration():
    """A pulse release whose `pulse migrate` fails (exit 3) and whose server would run fine."""
    sys.path.insert(0, str(REPO / "examples" / "pulse"))
    import build  # noqa: E402  (examples/pulse/build.py)
    entries = []
    for name, mode, data in build.release_entries(BAD_MIGRATION):
        if name == "bin/pulse":
            entries.append(("bin/pulse-real", mode, data))
            data = (b'#!/bin/sh\n# test build: the migration fails\n'
                    b'[ "$1" = migrate ] && { echo "migration 3 failed: relation does not exist" >&2; exit 3; }\n'
                    b'exec "$(dirname "$0")/pulse-real" "$@"\n')
        entries.append((name, mode, data))
    (REPO / "examples" / "pulse" / "dist" / f"pulse-{BAD_MIGRATION}.tar.gz").write_bytes(
        build.tarball_bytes(BAD_MIGRATION, entries=entries))


def _assert_no_canary(proc, run_dir, *secrets):
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "stdout" for p in files) and any("job_events" in p.parts for p in files), files
    for secret in secrets:
        assert secret not in proc.stdout + proc.stderr, "a secret reached shipit's output"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"a secret leaked into {path}"


def test_no_secret_reaches_any_output_when_a_systemd_deploy_fails(shipit, tmp_path):
    """Every failure path of the systemd kind, at -vvv through shipit, with a vaulted canary in the app's
    environment: a failed migration, failed health checks (automatic rollback), a rollback that fails too, a
    backup that fails, a refused restore. The canary is in no output, event, report or file of the run."""
    _build_bad_migration()
    ensure_live(shipit, "1.1.0")
    secret = f"CANARY-{uuid.uuid4().hex}"
    password = f"vault-pw-{uuid.uuid4().hex}"
    inventories = _canary_inventory(tmp_path / "project", secret, password)
    pulse = inventories / "canary" / "group_vars" / "app" / "pulse.yml"
    config = yaml.safe_load(pulse.read_text())
    config["shipit_health_checks"][0].update(retries=6, interval=0.25)  # a shorter health budget
    pulse.write_text(yaml.safe_dump(config, sort_keys=False))

    def canary(*args):
        proc, report, run_dir = shipit(*args, "--env", "canary", "--inventories", inventories, "-vvv",
                                       env={"SHIPIT_VAULT_PASSWORD": password})
        _assert_no_canary(proc, run_dir, secret, password)
        return proc, report

    live_release = live(ledger())["release_id"]
    try:
        proc, report = canary("deploy", "--version", BAD_MIGRATION)
        assert proc.returncode == 4 and "migration 3 failed" in json.dumps(report), proc.stdout[-3000:]
        assert secret in ssh("sudo cat /srv/pulse/shared/config/pulse.env").stdout  # the canary was used

        proc, report = canary("deploy", "--version", "1.2.0")  # broken: fails its health checks
        assert proc.returncode == 4 and report["failing_health_check"]["reason"] == "got 503", proc.stdout[-3000:]

        # The release to roll back to no longer runs and cannot start either: the rollback fails. (Behind the
        # front proxy a release that still runs is rolled back to by a switch, which would not fail.)
        slot = json.loads(ssh("sudo cat /var/lib/shipit/proxy/apps/pulse.json").stdout)["live_slot"]
        assert ssh(f"sudo chmod 0000 /srv/pulse/releases/{live_release}/bin/pulse && "
                   f"sudo systemctl stop pulse@{slot}.service").returncode == 0
        proc, report = canary("deploy", "--version", "1.2.0")
        assert proc.returncode not in (0, 4), proc.stdout[-3000:]
        assert report["hosts"][0]["rollback"]["healthy"] is False, report["hosts"][0]
        assert ssh(f"sudo chmod 0755 /srv/pulse/releases/{live_release}/bin/pulse").returncode == 0
        ensure_live(shipit, "1.1.0")

        # The backup before a deploy cannot be written: the deploy stops before the release.
        assert ssh("sudo mv /var/backups/shipit/pulse /var/backups/shipit/pulse.aside && "
                   "sudo touch /var/backups/shipit/pulse").returncode == 0
        proc, report = canary("deploy", "--version", "1.0.0")
        assert proc.returncode != 0 and live(ledger())["version"] == "1.1.0", proc.stdout[-3000:]

        proc, report = canary("restore", "--backup", "no-such-backup")
        assert proc.returncode != 0 and "no-such-backup" in json.dumps(report), proc.stdout[-3000:]
    finally:
        assert ssh(f"sudo sh -c 'chmod 0755 /srv/pulse/releases/{live_release}/bin/pulse; "
                   "if [ -d /var/backups/shipit/pulse.aside ]; then rm -f /var/backups/shipit/pulse && "
                   "mv /var/backups/shipit/pulse.aside /var/backups/shipit/pulse; fi'").returncode == 0
        ensure_live(shipit, "1.1.0")  # the lab's own environment file again (no canary on the host)
        assert secret not in ssh("sudo cat /srv/pulse/shared/config/pulse.env").stdout


def test_a_push_to_main_deploys_through_the_post_receive_hook(shipit, tmp_path):
    """Self-hosted git: the hook installed by scripts/install-post-receive-hook runs the same shipit command."""
    ensure_live(shipit, "1.0.0")
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    assert run(*git, "init", "-q", "--bare", tmp_path / "app.git").returncode == 0
    proc = run(REPO / "scripts" / "install-post-receive-hook", "--repo", tmp_path / "app.git", "--env", "lab",
               "--shipit", BIN / "shipit", "--work-dir", tmp_path / "hook", "--", "--limit", HOST)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "work"
    assert run(*git, "clone", "-q", tmp_path / "app.git", work).returncode == 0
    _copy_lab_inventory(work / "inventories" / "lab")  # the application repository: its inventories
    for argv in (["add", "."], ["commit", "-qm", "feat: pulse 1.1.0"], ["tag", "v1.1.0"]):
        assert run(*git, *argv, cwd=work).returncode == 0
    # The venv's bin/ is not on a git hook's PATH: shipit finds its Ansible by itself.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
    proc = run(*git, "push", "origin", "HEAD:refs/heads/main", "--tags", cwd=work, env={"PATH": path})
    assert proc.returncode == 0, proc.stderr
    assert "shipit: deploy of 1.1.0 exited 0" in proc.stderr, proc.stderr
    [report_path] = (tmp_path / "hook" / "runs").glob("*/report.json")
    report = valid(json.loads(report_path.read_text()))
    assert (report["exit_code"], report["version"], report["limit"]) == (0, "1.1.0", HOST)
    sha = run("git", "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert live(ledger())["version"] == "1.1.0" and live(ledger())["git_sha"] == sha
