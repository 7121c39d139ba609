"""Fault tests of the deploy's safety on three real systemd hosts (issue 6). Each asserts the safe outcome.

Molecule's converge deployed 1.0.0 to shipit-molecule-safety-{1,2,3} with inventories/development's
configuration. These tests run in file order, each building on the last: they drive further runs of the
collection's playbooks as a user would (some killed with SIGKILL mid-run) and check the hosts independently
with `docker exec` (HTTP from the host itself, systemctl, the file system, the ledger and audit files).
"""

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# The scenarios' shared helpers live in molecule/shipit_molecule.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import playbook, playbook_argv, playbook_env  # noqa: E402

HOSTS = [f"shipit-molecule-safety-{n}" for n in (1, 2, 3)]
APP_DIR = "/srv/pulse"
STATE_DIR = "/var/lib/shipit"
LEDGER = f"{STATE_DIR}/pulse/ledger.json"
LOCK = f"{STATE_DIR}/pulse/deploy.lock"
PROGRESS = f"{STATE_DIR}/pulse/in_progress.json"
AUDIT = f"{STATE_DIR}/audit.log"
# The host side of a shipit.deploy.agent call as pgrep -f sees it: a python running the cached zipapp (the
# interpreter may be given by its full path; sudo's or a shell's command line holding the path is not matched).
AGENT = f"^[^ ]*python[0-9.]* {STATE_DIR}/agent/[0-9a-f]{{16}}[.]pyz$"

testinfra_hosts = HOSTS[:1]


# --- driving the playbooks ---------------------------------------------------------------------------

def start(name, *args, log=None):
    """A playbook run in its own process group, so that it can be killed with all its workers."""
    return subprocess.Popen(playbook_argv(name, *args), stdout=log, stderr=subprocess.STDOUT, text=True, env=playbook_env(),
                            start_new_session=True)


def kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def tail(proc_or_text):
    return (proc_or_text if isinstance(proc_or_text, str) else proc_or_text.stdout)[-4000:]


def flat(proc_or_text):
    """The output with its line wrapping undone (the yaml callback wraps long messages)."""
    return " ".join((proc_or_text if isinstance(proc_or_text, str) else proc_or_text.stdout).split())


# --- looking at the hosts ----------------------------------------------------------------------------

def sh(host, command, check=True):
    proc = subprocess.run(["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"{host}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def exists(host, path):
    return subprocess.run(["docker", "exec", host, "test", "-e", path], timeout=30).returncode == 0


def read_json(host, path):
    return json.loads(sh(host, f"cat {path}"))


def health(host):
    out = sh(host, "curl -s --max-time 5 http://127.0.0.1:8080/health", check=False)
    return json.loads(out) if out.startswith("{") else {"status": "down", "raw": out}


def ledger(host):
    return read_json(host, LEDGER)["releases"]


def live(host):
    [entry] = [e for e in ledger(host) if e["status"] == "live"]
    return entry


def current(host):
    return sh(host, f"readlink {APP_DIR}/current")


def audit(host):
    return [json.loads(line) for line in sh(host, f"cat {AUDIT}").splitlines()]


def state(host):
    """What must not move when a run is refused: current, the releases, the ledger, the process, the lock."""
    return (current(host), sh(host, f"ls {APP_DIR}/releases"), sh(host, f"cat {LEDGER}"),
            sh(host, "systemctl show --property MainPID --value pulse.service"), exists(host, LOCK))


def states():
    return [state(h) for h in HOSTS]


def assert_consistent(host, version):
    """The safe end state: current is the release the ledger records as live, healthy, nothing left locked."""
    entry = live(host)
    assert entry["version"] == version, (host, entry)
    assert current(host) == f"releases/{entry['release_id']}", host
    body = health(host)
    assert (body["status"], body["version"]) == ("healthy", version), (host, body)
    assert not exists(host, LOCK), f"{host}: lock left behind"
    assert not exists(host, PROGRESS), f"{host}: in-progress record left behind"


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on 127.0.0.1 that records what it got."""
    received = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver():
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver.received
    server.shutdown()


# --- the fault cases ---------------------------------------------------------------------------------

def test_converge_deployed_everywhere_and_audited():
    for host in HOSTS:
        assert_consistent(host, "1.0.0")
        entries = [(e["event"], e["result"]) for e in audit(host)]
        assert ("deploy", "started") in entries and ("deploy", "deployed") in entries, entries


def test_concurrent_deploys_exactly_one_proceeds(tmp_path):
    logs = [open(tmp_path / f"run{n}.log", "w+") for n in (1, 2)]
    procs = [start("deploy.yml", "-e", "shipit_version=1.1.0", log=log) for log in logs]
    codes = [proc.wait(600) for proc in procs]
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
    winners = [n for n, code in enumerate(codes) if code == 0]
    assert len(winners) == 1, (codes, [tail(o) for o in outputs])
    winner, loser = outputs[winners[0]], outputs[1 - winners[0]]
    assert re.search(r"locked by \S+ since \S+ \(1\.1\.0\)", flat(loser)) and "Nothing was changed" in flat(loser), tail(loser)
    recap = loser.split("PLAY RECAP")[-1]
    for host in HOSTS:
        assert re.search(rf"{host}\s*:\s*ok=\d+\s+changed=0\s", recap), recap
    # The notifier of development (127.0.0.1:8765) is down: reported, and the deploy still succeeded.
    assert "WARNING: notifier local receiver did not take the" in flat(winner), tail(winner)
    for host in HOSTS:
        assert_consistent(host, "1.1.0")
        assert [e["version"] for e in ledger(host)].count("1.1.0") == 1


def test_sigkill_right_after_the_switch_then_the_next_deploy_recovers(tmp_path):
    before = current(HOSTS[0])
    with open(tmp_path / "killed.log", "w") as log:
        proc = start("deploy.yml", "-e", "shipit_version=1.3.0-slowstart", log=log)
        # 1.3.0-slowstart answers only 6 s after it starts: the run sits in its health check after the switch.
        wait_for(lambda: current(HOSTS[0]) != before, 300, "the switch of the killed run")
        kill(proc)
    # What the killed run left: the lock, its in-progress record, current switched but not recorded live.
    progress = read_json(HOSTS[0], PROGRESS)
    assert progress["version"] == "1.3.0-slowstart" and progress["stage"] in ("release", "verify"), progress
    assert live(HOSTS[0])["version"] == "1.1.0"
    assert current(HOSTS[0]) == f"releases/{progress['release_id']}"

    # Its lock would last 30 minutes (shipit_lock_ttl), but its ansible-playbook process, started on this
    # controller, is gone: the next run breaks the lock at once.
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, tail(proc)
    assert "INTERRUPTED RUN on shipit-molecule-safety-1: deploy of pulse 1.3.0-slowstart" in flat(proc)
    assert "stopped at stage" in flat(proc) and "was broken" in flat(proc)
    for host in HOSTS:
        assert_consistent(host, "1.1.0")
        interrupted = [e for e in ledger(host) if e["version"] == "1.3.0-slowstart"]
        if interrupted:  # hosts the killed run had reached
            assert [e["status"] for e in interrupted] == ["failed"]
            assert interrupted[0]["reason"].startswith("interrupted: deploy of 1.3.0-slowstart")
    events = [(e["event"], e["result"]) for e in audit(HOSTS[0])]
    assert ("lock_broken", "dead") in events and ("recover", "succeeded") in events, events


def test_sigkill_before_the_switch_forced_unlock_then_rollback_recovers(tmp_path):
    before = [current(h) for h in HOSTS]
    with open(tmp_path / "killed.log", "w") as log:
        proc = start("deploy.yml", "-e", "shipit_version=1.3.1-slowmigrate", log=log)
        # 1.3.1-slowmigrate's migration takes 8 s: the run is killed while it migrates, before its switch.
        wait_for(lambda: sh(HOSTS[0], "pgrep -f '^sleep 8$'", check=False) != "", 300, "the migration of the killed run")
        kill(proc)
    assert [current(h) for h in HOSTS] == before, "a half-made release must never be live"
    assert read_json(HOSTS[0], PROGRESS)["stage"] == "release"

    # Seen from another controller (a CI runner) the lock of the killed run would block deploys until it
    # expires (30 minutes): force it open.
    proc = playbook("unlock.yml", "-e", "shipit_unlock_reason='the CI job was killed'")
    assert proc.returncode == 0, tail(proc)
    assert "removed the lock:" in flat(proc) and "is still recorded: the next deploy or rollback undoes it first" in flat(proc)
    for host in HOSTS:
        assert not exists(host, LOCK) and exists(host, PROGRESS)
        forced = [e for e in audit(host) if e["event"] == "unlock"]
        assert forced[-1]["result"] == "forced" and forced[-1]["reason"] == "the CI job was killed"
        assert forced[-1]["released_lock"]["version"] == "1.3.1-slowmigrate"

    # The next run of another playbook undoes the interrupted deploy first, then does its own work.
    proc = playbook("rollback.yml", "-e", "shipit_rollback_to=1.0.0")
    assert proc.returncode == 0, tail(proc)
    assert "INTERRUPTED RUN on shipit-molecule-safety-1: deploy of pulse 1.3.1-slowmigrate" in flat(proc)
    for host in HOSTS:
        assert_consistent(host, "1.0.0")
        statuses = {e["version"]: e["status"] for e in ledger(host)}
        assert statuses["1.3.1-slowmigrate"] == "failed" and statuses["1.1.0"] == "rolled_back", statuses


def test_sigkill_of_the_host_agent_after_the_switch_rolls_the_fleet_back(tmp_path):
    """The host side of a call (shipit.deploy.agent's python on the host) killed after the switch: the call
    fails, and the run rolls the fleet back; nothing is left locked or half done."""
    before = current(HOSTS[0])
    with open(tmp_path / "agent-killed.log", "w") as log:
        proc = start("deploy.yml", "-e", "shipit_version=1.3.0-slowstart", log=log)
        wait_for(lambda: current(HOSTS[0]) != before, 300, "the switch")
        # The first agent call after the switch: the bake's health check (1.3.0-slowstart answers only 6 s
        # after it starts) or the record before it. "gave no answer" below: it was killed.
        wait_for(lambda: sh(HOSTS[0], f"pkill -KILL -f '{AGENT}' && echo killed", check=False) == "killed", 60,
                 "an agent call after the switch")
        assert proc.wait(300) != 0
    output = flat((tmp_path / "agent-killed.log").read_text())
    assert "gave no answer" in output, output[-3000:]
    assert "The fleet runs 1.0.0" in output, output[-3000:]
    for host in HOSTS:
        assert_consistent(host, "1.0.0")
    assert {e["version"]: e["status"] for e in ledger(HOSTS[0])}["1.3.0-slowstart"] == "failed"


def test_one_of_three_hosts_failing_rolls_the_fleet_back(receiver):
    url, received = receiver
    hooks = [{"name": "test receiver", "url": url, "headers": {"Authorization": "Bearer {{ vault_notify_webhook_token }}"}}]
    proc = playbook("deploy.yml", "-e", "shipit_version=1.4.0", "-e",
                    json.dumps({"shipit_serial": [1, "100%"], "shipit_notify_webhooks": hooks}))
    assert proc.returncode != 0
    assert "The fleet runs 1.0.0" in flat(proc), tail(proc)
    for host in HOSTS:
        assert_consistent(host, "1.0.0")
    # Host 1 was switched in the canary batch, host 2 in the batch of host 3: both are rolled back with the fleet.
    for host in HOSTS[:2]:
        assert {e["version"]: e["status"] for e in ledger(host)}["1.4.0"] == "rolled_back"
    assert {e["version"]: e["status"] for e in ledger(HOSTS[2])}["1.4.0"] == "failed"

    assert [r["body"]["event"] for r in received] == ["start", "rolled_back"], received
    start_msg, end = (r["body"] for r in received)
    assert received[0]["headers"]["Authorization"] == "Bearer dev-webhook-token"  # from the development vault
    assert (end["app"], end["environment"], end["version"], end["severity"]) == ("pulse", "development", "1.4.0", "warning")
    assert end["versions"] == {"1.0.0": HOSTS}
    assert end["hosts"][HOSTS[2]]["outcome"] == "rolled_back" and "never-1.4.0" in end["reason"]
    assert end["hosts"][HOSTS[0]]["outcome"] == "fleet_rolled_back"
    assert isinstance(end["duration_s"], int) and end["duration_s"] > 0
    assert start_msg["hosts"] == HOSTS


def test_flapping_release_is_rolled_back():
    host = HOSTS[1]
    proc = playbook("deploy.yml", "-e", "shipit_version=1.5.0-flapping", "-e", f"shipit_hosts={host}")
    assert proc.returncode != 0
    assert "needed 3 consecutive passes" in flat(proc), tail(proc)
    assert_consistent(host, "1.0.0")
    assert sh(host, "systemctl is-active pulse.service") == "active"
    assert {e["version"]: e["status"] for e in ledger(host)}["1.5.0-flapping"] == "failed"


def test_crash_looping_release_trips_the_start_limit_and_is_still_rolled_back():
    host = HOSTS[0]
    since = sh(host, "date '+%Y-%m-%d %H:%M:%S'")
    proc = playbook("deploy.yml", "-e", "shipit_version=1.6.0-crashloop", "-e", f"shipit_hosts={host}")
    assert proc.returncode != 0
    assert "rolled back to 1.0.0 (healthy)" in flat(proc), tail(proc)
    journal = sh(host, f"journalctl -u pulse.service --since '{since}' --no-pager")
    # systemd gave up on the crash-looping release; the rollback reset that before restarting the old release.
    assert "Start request repeated too quickly" in journal or "start-limit-hit" in journal, journal[-2000:]
    assert_consistent(host, "1.0.0")
    assert sh(host, "systemctl is-active pulse.service") == "active"


def test_artifact_checksum_mismatch_is_refused_before_any_change():
    before = states()
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0", "-e", "shipit_artifact_sha256=" + "0" * 64)
    assert proc.returncode != 0
    assert "does not match its checksum: expected sha256 0000" in flat(proc), tail(proc)
    assert states() == before


def test_unreachable_host_is_refused_before_any_change(tmp_path):
    ghost = tmp_path / "ghost.yml"
    # A host whose SSH port does not answer (nothing listens on 127.0.0.1:9).
    ghost.write_text(json.dumps({"all": {"children": {"app": {"hosts": {"shipit-molecule-safety-ghost": {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "nobody"}}}}}}))
    before = states()
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0", inventory=str(ghost))
    assert proc.returncode != 0
    assert "shipit-molecule-safety-ghost" in flat(proc) and "UNREACHABLE" in flat(proc), tail(proc)
    assert states() == before


@pytest.mark.parametrize("args, message", [
    ([], "shipit_version is required and must be a plain version string"),
    (["-e", json.dumps({"shipit_version": 1.1})], "shipit_version is required and must be a plain version string"),
    (["-e", "shipit_version=../../etc/passwd"], "shipit_version is required and must be a plain version string"),
    (["-e", "shipit_version=1.1.0", "-e", "shipit_environment=moon"], "the environment moon is not one of"),
    (["-e", "shipit_version=1.1.0", "-e", "shipit_environment=production", "-e", "shipit_confirm_required=true"],
     "production needs an explicit confirmation: add -e shipit_confirm=production"),
    (["-e", "shipit_version=1.1.0", "-e", json.dumps({"shipit_lock_ttl": "soon"})], "is not usable"),
    (["-e", "shipit_version=1.1.0", "-e", json.dumps({"shipit_ports": "8080"})], "is not usable"),
])
def test_bad_inputs_are_refused_before_any_change(args, message):
    before = states()
    proc = playbook("deploy.yml", *args)
    assert proc.returncode != 0
    assert message in flat(proc), tail(proc)
    assert states() == before


def test_disk_nearly_full_is_refused_before_any_change():
    host = HOSTS[2]
    # The releases of host 3 on a small file system that is nearly full.
    sh(host, f"cp -a {APP_DIR}/releases /tmp/releases && mount -t tmpfs -o size=160m tmpfs {APP_DIR}/releases"
             f" && cp -a /tmp/releases/. {APP_DIR}/releases/ && rm -rf /tmp/releases"
             f" && fallocate -l 120m {APP_DIR}/releases/.filler")
    try:
        before = states()
        proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
        assert proc.returncode != 0
        assert f"preflight failed on {host}, nothing was changed: (1) only " in flat(proc), tail(proc)
        assert "MB free on /srv/pulse/releases" in flat(proc) and "fix: free space there" in flat(proc)
        assert states() == before
    finally:
        sh(host, f"rm -f {APP_DIR}/releases/.filler")


def test_audit_log_tells_the_story():
    entries = audit(HOSTS[0])
    events = [(e["event"], e["result"]) for e in entries]
    for expected in [("deploy", "started"), ("deploy", "deployed"), ("lock_broken", "dead"), ("recover", "succeeded"),
                     ("unlock", "forced"), ("rollback", "succeeded"), ("deploy", "fleet_rolled_back"),
                     ("deploy", "rolled_back")]:
        assert expected in events, (expected, events)
    for entry in entries:
        assert entry["time"] and entry["app"] == "pulse" and entry["who"], entry


def test_a_shared_database_is_migrated_once_per_run_not_once_per_batch():
    """systemd_service_migrate_once with production's rollout (a canary host, then two halves): three batches of
    one host each, one migration in all, in the first batch (before the first switch)."""
    proc = playbook("deploy.yml", "-e", "shipit_version=1.0.1", "-e",
                    json.dumps({"shipit_serial": [1, "50%", "100%"], "systemd_service_migrate_once": True}))
    assert proc.returncode == 0, tail(proc)
    assert len(re.findall(r"^PLAY \[Deploy the release\]", proc.stdout, re.MULTILINE)) == 3, tail(proc)
    release_dir = f"{APP_DIR}/releases/{live(HOSTS[0])['release_id']}"
    # systemd logs the start of each transient unit that systemd-run makes for the migration.
    runs = {host: len([line for line in sh(host, "journalctl --no-pager -o cat").splitlines()
                       if line.startswith("Started run-") and f"{release_dir}/bin/pulse migrate" in line])
            for host in HOSTS}
    assert runs == {HOSTS[0]: 1, HOSTS[1]: 0, HOSTS[2]: 0}, runs
    for host in HOSTS:
        assert_consistent(host, "1.0.1")
