"""Zero-downtime deploys (issue 14) on a real systemd host behind a real HAProxy, under a real client.

Molecule's converge deployed pulse 1.0.0 with the lab's configuration: HAProxy on the host's port 8080
(published on 127.0.0.1:18090 of this machine), pulse in slot blue (18080) or green (18081). During each
operation a prober (lab/prober.py) calls the public port every 20 ms; every test asserts that not one of its
requests failed and, where a release is broken, that the broken release answered none of them. The tests run
in file order, each building on the last, and check the host independently (systemctl, the proxy's runtime
API and files, the ledger).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import REPO, ledger, live, playbook, playbook_argv, playbook_env  # noqa: E402

sys.path.insert(0, str(REPO))
from lab.prober import Prober  # noqa: E402

PUBLIC = "http://127.0.0.1:18090"
SLOT_PORTS = {"blue": 18080, "green": 18081}
PROXY_DOC = "/var/lib/shipit/proxy/apps/pulse.json"
PROGRESS = "/var/lib/shipit/pulse/in_progress.json"

# The systemd host; test_zero_downtime_compose.py tests the Compose host (and uses this file's helpers).
testinfra_hosts = ["shipit-molecule-zero-downtime"]


@contextmanager
def probing(path="/health", public=PUBLIC):
    prober = Prober(public + path, interval=0.02, max_seconds=600)
    prober.start()
    time.sleep(0.5)  # a few requests before the operation starts
    try:
        yield prober
    finally:
        time.sleep(0.5)
        prober.stop()
    print(f"prober {path}: {prober.line()}")


def assert_no_failed_request(prober, allowed_versions):
    summary = prober.summary()
    assert summary["requests"] > 50, summary
    assert summary["failed"] == 0, summary
    assert set(summary["versions"]) <= set(allowed_versions), summary


def tail(proc):
    return proc.stdout[-4000:]


def flat(proc):
    return " ".join(proc.stdout.split())


def live_slot(host):
    return json.loads(host.file(PROXY_DOC).content_string)["live_slot"]


SHOW_STAT = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
             "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")


def servers(host):
    """{server: status} of pulse's backend, from HAProxy's runtime API on the host."""
    out = host.check_output(f'python3 -c "{SHOW_STAT}"')
    rows = [line.split(",") for line in out.splitlines() if line.startswith("pulse,")]
    return {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}


def active(host, slot):
    return host.run(f"systemctl is-active pulse@{slot}.service").stdout.strip() == "active"


def main_pid(host, slot):
    return host.check_output(f"systemctl show --property MainPID --value pulse@{slot}.service")


def assert_consistent(host, version):
    """The ledger, the proxy and systemd agree: the live release runs in the live slot, the other slot is stopped."""
    entry = live(host)
    slot = live_slot(host)
    other = "green" if slot == "blue" else "blue"
    assert entry["version"] == version and entry["slot"] == slot, (entry, slot)
    assert host.file(f"/srv/pulse/slots/{slot}").linked_to == f"/srv/pulse/releases/{entry['release_id']}"
    assert active(host, slot) and not active(host, other)
    assert servers(host)[slot] == "UP" and servers(host)[other] == "MAINT", servers(host)
    assert json.loads(host.check_output(f"curl -s --max-time 5 127.0.0.1:{SLOT_PORTS[slot]}/version"))["version"] == version


def start(*args, log=None):
    """A deploy in its own process group, so that it can be killed with all its workers."""
    return subprocess.Popen(playbook_argv("deploy.yml", *args), stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=playbook_env(), start_new_session=True)


def kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


# --- the tests, in order --------------------------------------------------------------------------------

def test_converge_serves_1_0_0_through_the_proxy_from_a_slot(host):
    assert host.service("haproxy").is_running and host.service("haproxy").is_enabled
    assert json.loads(urllib.request.urlopen(PUBLIC + "/health", timeout=5).read())["version"] == "1.0.0"
    assert_consistent(host, "1.0.0")
    config = host.file("/etc/haproxy/haproxy.cfg")
    assert config.content_string.startswith("# Managed by shipit.deploy")
    assert host.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    # pulse listens on loopback only: the public port is HAProxy's.
    assert host.check_output("cat /srv/pulse/shared/config/slot-blue.env") == 'PULSE_PORT="18080"'


def test_a_deploy_drops_no_request(host):
    before = live_slot(host)
    with probing() as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, tail(proc)
    assert_no_failed_request(prober, {"1.0.0", "1.1.0"})
    assert prober.versions["1.1.0"] > 0
    assert live_slot(host) != before
    assert_consistent(host, "1.1.0")


def test_a_broken_release_never_gets_a_request(host):
    slot = live_slot(host)
    pid = main_pid(host, slot)
    with probing() as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.2.0")
    assert proc.returncode != 0
    assert "deliberately broken build" in flat(proc)
    assert_no_failed_request(prober, {"1.1.0"})
    # Checked on its own slot's port and refused there; users stayed on the old slot, which never restarted.
    failed = [e for e in ledger(host) if e["version"] == "1.2.0"]
    assert [e["status"] for e in failed] == ["failed"]
    assert f"127.0.0.1:{SLOT_PORTS['green' if slot == 'blue' else 'blue']}/health" in failed[0]["reason"]
    assert live_slot(host) == slot and main_pid(host, slot) == pid
    assert_consistent(host, "1.1.0")


def test_a_manual_rollback_drops_no_request(host):
    with probing() as prober:
        proc = playbook("rollback.yml")
    assert proc.returncode == 0, tail(proc)
    assert_no_failed_request(prober, {"1.0.0", "1.1.0"})
    assert_consistent(host, "1.0.0")


def test_the_bake_catches_a_release_that_turns_unhealthy_and_switches_back_without_a_restart(host):
    slot = live_slot(host)
    pid = main_pid(host, slot)
    # The souring release answers /version well throughout: users must not notice it failing its health.
    with probing("/version") as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.3.0-souring")
    assert proc.returncode != 0
    assert_no_failed_request(prober, {"1.0.0", "1.3.0-souring"})
    assert prober.versions["1.3.0-souring"] > 0, "the souring release never got the traffic"
    [failed] = [e for e in ledger(host) if e["version"] == "1.3.0-souring"]
    # Healthy on its slot; failed by the bake, which checks through the public port.
    assert failed["status"] == "failed" and "127.0.0.1:8080/health" in failed["reason"], failed
    # The old slot kept running through the bake and got the traffic back: a switch, not a restart.
    assert live_slot(host) == slot and main_pid(host, slot) == pid
    assert_consistent(host, "1.0.0")


def test_sigkill_between_the_slot_start_and_the_traffic_move_then_the_next_run_recovers(host, tmp_path):
    slot = live_slot(host)
    idle = "green" if slot == "blue" else "blue"
    with probing() as prober:
        with open(tmp_path / "killed.log", "w") as log:
            proc = start("-e", "shipit_version=1.3.1-slowstart", log=log)
            # 1.3.1-slowstart answers only 6 s after it starts: the run sits in the slot's health check.
            wait_for(lambda: active(host, idle), 300, "the start of the idle slot")
            time.sleep(1)
            kill(proc)
        assert live_slot(host) == slot and active(host, idle)
        progress = json.loads(host.file(PROGRESS).content_string)
        assert progress["version"] == "1.3.1-slowstart", progress
        proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0")
    assert proc.returncode == 0, tail(proc)
    assert "INTERRUPTED RUN" in flat(proc)
    assert_no_failed_request(prober, {"1.0.0"})
    assert [e["status"] for e in ledger(host) if e["version"] == "1.3.1-slowstart"] == ["failed"]
    assert_consistent(host, "1.0.0")


def test_sigkill_during_the_drain_then_the_next_run_recovers(host, tmp_path):
    proc = playbook("deploy.yml", "-e", "shipit_version=1.4.0-slowvisits")
    assert proc.returncode == 0, tail(proc)
    slot = live_slot(host)
    slow = {}

    def slow_request():  # in flight on the old slot while the traffic moves: the drain waits for it
        started = time.monotonic()
        with urllib.request.urlopen(PUBLIC + "/visits", timeout=30) as response:
            slow.update(status=response.status, seconds=time.monotonic() - started)

    with probing() as prober:
        request = threading.Thread(target=slow_request)
        request.start()
        time.sleep(0.5)
        with open(tmp_path / "killed.log", "w") as log:
            proc = start("-e", "shipit_version=1.1.0", log=log)
            wait_for(lambda: live_slot(host) != slot, 300, "the traffic move of the killed run")
            kill(proc)
        request.join(30)
        # The request in flight finished on the old slot, which the killed run never stopped.
        assert slow.get("status") == 200 and slow["seconds"] > 5, slow
        assert active(host, slot)
        proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, tail(proc)
    assert "INTERRUPTED RUN" in flat(proc)
    assert_no_failed_request(prober, {"1.4.0-slowvisits", "1.1.0"})
    assert [e["status"] for e in ledger(host) if e["version"] == "1.1.0"][-2:] == ["failed", "live"]
    assert_consistent(host, "1.1.0")


@pytest.mark.parametrize("extra, message", [
    ({"shipit_slot_ports": {"blue": 18080, "green": 8080}}, "http_port and slot_ports.green are the same port 8080"),
    ({"shipit_https_port": 8443, "shipit_tls_certificate": "/etc/ssl/private/missing.pem"},
     "tls_certificate '/etc/ssl/private/missing.pem' is not a file on the host"),
    ({"shipit_slot_ports": {"blue": 18080}}, "slot_ports must map each slot (blue, green) to a port"),
])
def test_invalid_proxy_settings_are_refused_before_any_change(host, extra, message):
    before = (host.file("/var/lib/shipit/pulse/ledger.json").content_string, host.file("/etc/haproxy/haproxy.cfg").content_string)
    proc = playbook("deploy.yml", extra={"shipit_version": "1.0.0", **extra})
    assert proc.returncode != 0
    assert message in flat(proc) and "nothing was changed" in flat(proc), tail(proc)
    assert (host.file("/var/lib/shipit/pulse/ledger.json").content_string,
            host.file("/etc/haproxy/haproxy.cfg").content_string) == before


@contextmanager
def squatting(host, port):
    """A process of another user than the app's (nobody, whose processes the preflight may not be able to name
    in a container) listening on 127.0.0.1:port for the length of the block."""
    host.check_output(f"systemd-run --uid=nobody --unit shipit-test-squatter python3 -m http.server {port} --bind 127.0.0.1")
    try:
        wait_for(lambda: host.socket(f"tcp://127.0.0.1:{port}").is_listening, 30, "the squatter")
        yield
    finally:
        host.run("systemctl stop shipit-test-squatter.service")


def test_a_slot_port_taken_by_another_process_is_refused_before_any_change(host):
    port = SLOT_PORTS["green" if live_slot(host) == "blue" else "blue"]
    with squatting(host, port):
        before = host.file("/var/lib/shipit/pulse/ledger.json").content_string
        proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0")
        assert proc.returncode != 0
        assert f"port {port} is in use by" in flat(proc) and "nobody" in flat(proc) and "nothing was changed" in flat(proc), tail(proc)
        assert host.file("/var/lib/shipit/pulse/ledger.json").content_string == before


def test_maintenance_serves_a_503_page_with_retry_after_and_restore_uses_it(host):
    proc = playbook("maintenance.yml", "-e", "shipit_maintenance=on")
    assert proc.returncode == 0, tail(proc)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(PUBLIC + "/health", timeout=5)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "30"
    assert "Down for maintenance" in refused.value.read().decode()
    assert playbook("maintenance.yml", "-e", "shipit_maintenance=off").returncode == 0
    assert urllib.request.urlopen(PUBLIC + "/health", timeout=5).status == 200

    # A restore swaps the database under the maintenance page: users get 503 with the page, never a refused
    # connection, and the app again afterwards.
    with probing() as prober:
        proc = playbook("restore.yml", "-e", "shipit_backup=latest")
    assert proc.returncode == 0, tail(proc)
    summary = prober.summary()
    assert set(summary["failures"]) <= {"HTTP 503"}, summary
    assert urllib.request.urlopen(PUBLIC + "/health", timeout=5).status == 200
    assert_consistent(host, "1.1.0")


def test_a_rollback_with_data_serves_the_maintenance_page_while_the_data_is_swapped(host):
    with probing() as prober:
        proc = playbook("rollback.yml", "-e", "shipit_rollback_restore_db=true")
    assert proc.returncode == 0, tail(proc)
    summary = prober.summary()
    assert set(summary["failures"]) <= {"HTTP 503"}, summary
    assert set(summary["versions"]) <= {"1.1.0", "1.4.0-slowvisits"}, summary
    assert urllib.request.urlopen(PUBLIC + "/health", timeout=5).status == 200
    assert_consistent(host, "1.4.0-slowvisits")


def test_history_shows_the_live_slot(host):
    proc = playbook("history.yml")
    assert proc.returncode == 0, tail(proc)
    entry = live(host)
    row = next(line for line in proc.stdout.splitlines() if entry["release_id"] in line and " live " in line)
    assert f" {live_slot(host)} " in row
