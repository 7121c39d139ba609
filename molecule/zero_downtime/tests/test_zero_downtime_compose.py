"""Zero-downtime deploys of a Compose stack (issue 14): pulse + PostgreSQL on the host's own Docker engine,
behind a real HAProxy, under a real client.

Molecule's converge deployed pulse 1.0.0 with the lab's stack configuration: HAProxy on the host's port 8080
(published on 127.0.0.1:18091 of this machine), pulse in two copies of its service, pulse-blue (18080) and
pulse-green (18081), PostgreSQL single. During each operation a prober (lab/prober.py) calls the public port
every 20 ms; every test asserts that not one of its requests failed and, where a release is broken, that it
answered none of them, and that PostgreSQL was never restarted. The tests run in file order, each building on
the last, and check the host independently (docker, the proxy's runtime API and files, the ledger).
"""

import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_zero_downtime import (  # noqa: E402
    assert_no_failed_request, flat, kill, live_slot, probing, servers, squatting, start, tail, wait_for)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import changed_count, ledger, live  # noqa: E402
from shipit_molecule import playbook as run_playbook  # noqa: E402

HOST = "shipit-molecule-zero-downtime-compose"
PUBLIC = "http://127.0.0.1:18091"
SLOT_PORTS = {"blue": 18080, "green": 18081}
PROGRESS = "/var/lib/shipit/pulse/in_progress.json"
# PostgreSQL's container as the converge left it: no deploy or rollback may restart it.
POSTGRES = {}

testinfra_hosts = [HOST]


def playbook(name, *args, extra=None):
    return run_playbook(name, "-e", "shipit_hosts=stack", *args, extra=extra)


def container(host, service):
    """(id, started at, status) of the service's container, or None."""
    proc = host.run(f"docker inspect --format '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.State.Status}}}}' pulse-{service}-1")
    return tuple(proc.stdout.split()) if proc.rc == 0 else None


def running(host, slot):
    found = container(host, f"pulse-{slot}")
    return found is not None and found[2] == "running"


def assert_consistent(host, version):
    """The ledger, the proxy and Docker agree: the live release runs in the live slot on the image it pins, the
    other slot's copy is stopped, and PostgreSQL is the container the converge started."""
    entry = live(host)
    slot = live_slot(host)
    other = "green" if slot == "blue" else "blue"
    assert entry["version"] == version and entry["slot"] == slot, (entry, slot)
    assert host.file("/srv/pulse/current").linked_to == f"/srv/pulse/releases/{entry['release_id']}"
    image = host.check_output(f"docker inspect --format '{{{{.Image}}}}' pulse-pulse-{slot}-1")
    assert image == entry["images"]["pulse"]
    assert running(host, slot) and not running(host, other)
    assert servers(host)[slot] == "UP" and servers(host)[other] == "MAINT", servers(host)
    assert json.loads(host.check_output(f"curl -s --max-time 5 127.0.0.1:{SLOT_PORTS[slot]}/version"))["version"] == version
    assert container(host, "postgres") == POSTGRES["container"], "PostgreSQL was restarted"


# --- the tests, in order --------------------------------------------------------------------------------

def test_converge_serves_1_0_0_through_the_proxy_from_a_copy_of_the_service(host):
    POSTGRES["container"] = container(host, "postgres")
    assert POSTGRES["container"][2] == "running"
    assert json.loads(urllib.request.urlopen(PUBLIC + "/health", timeout=5).read())["version"] == "1.0.0"
    assert_consistent(host, "1.0.0")
    services = host.check_output("docker compose --project-directory /srv/pulse/current config --services").split()
    assert sorted(services) == ["postgres", "pulse-blue", "pulse-green"]
    # Each copy is published on loopback only: the public port is HAProxy's.
    assert host.check_output(f"docker port pulse-pulse-{live_slot(host)}-1 8080") == \
        f"127.0.0.1:{SLOT_PORTS[live_slot(host)]}"


def test_a_deploy_of_the_stack_drops_no_request(host):
    before = live_slot(host)
    with probing(public=PUBLIC) as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, tail(proc)
    assert_no_failed_request(prober, {"1.0.0", "1.1.0"})
    assert prober.versions["1.1.0"] > 0
    assert live_slot(host) != before
    assert json.loads(urllib.request.urlopen(PUBLIC + "/health", timeout=5).read())["schema"] == 2
    assert_consistent(host, "1.1.0")


def snapshot(host):
    """What a check-mode run must leave as it is: the ledger, the proxy's settings and config, current, the containers."""
    return (host.file("/var/lib/shipit/pulse/ledger.json").content_string,
            host.file("/var/lib/shipit/proxy/apps/pulse.json").content_string,
            host.file("/etc/haproxy/haproxy.cfg").content_string, host.file("/srv/pulse/current").linked_to,
            host.check_output("docker ps --all --no-trunc --format '{{.ID}} {{.State}}' | sort"))


def test_check_mode_of_a_deploy_of_the_stack_reports_the_switch_and_changes_nothing(host):
    before = snapshot(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0", "--check")
    assert proc.returncode == 0, tail(proc)
    assert "Move the traffic" in proc.stdout and changed_count(proc, HOST) > 0, tail(proc)
    assert snapshot(host) == before


def test_a_broken_release_of_the_stack_never_gets_a_request(host):
    slot = live_slot(host)
    serving = container(host, f"pulse-{slot}")
    with probing(public=PUBLIC) as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.2.0")
    assert proc.returncode != 0
    assert_no_failed_request(prober, {"1.1.0"})
    [failed] = [e for e in ledger(host) if e["version"] == "1.2.0"]
    idle = "green" if slot == "blue" else "blue"
    # Refused on its own slot (its container's healthcheck), while the old copy kept serving, never restarted.
    assert failed["status"] == "failed" and f"pulse-pulse-{idle}-1 is unhealthy" in failed["reason"], failed
    assert live_slot(host) == slot and container(host, f"pulse-{slot}") == serving
    assert_consistent(host, "1.1.0")


def test_a_manual_rollback_of_the_stack_drops_no_request(host):
    with probing(public=PUBLIC) as prober:
        proc = playbook("rollback.yml")
    assert proc.returncode == 0, tail(proc)
    assert_no_failed_request(prober, {"1.0.0", "1.1.0"})
    assert_consistent(host, "1.0.0")


def test_the_bake_catches_a_release_of_the_stack_that_turns_unhealthy_and_switches_back(host):
    slot = live_slot(host)
    serving = container(host, f"pulse-{slot}")
    with probing("/version", public=PUBLIC) as prober:
        proc = playbook("deploy.yml", "-e", "shipit_version=1.3.0-souring")
    assert proc.returncode != 0
    assert_no_failed_request(prober, {"1.0.0", "1.3.0-souring"})
    assert prober.versions["1.3.0-souring"] > 0, "the souring release never got the traffic"
    [failed] = [e for e in ledger(host) if e["version"] == "1.3.0-souring"]
    assert failed["status"] == "failed" and "127.0.0.1:8080/health" in failed["reason"], failed
    # A switch back to the copy that kept running through the bake, not a restart.
    assert live_slot(host) == slot and container(host, f"pulse-{slot}") == serving
    assert_consistent(host, "1.0.0")


def test_sigkill_between_the_slot_start_and_the_traffic_move_then_the_next_run_recovers(host, tmp_path):
    slot = live_slot(host)
    idle = "green" if slot == "blue" else "blue"
    with probing(public=PUBLIC) as prober:
        with open(tmp_path / "killed.log", "w") as log:
            proc = start("-e", "shipit_hosts=stack", "-e", "shipit_version=1.3.1-slowstart", log=log)
            # 1.3.1-slowstart serves only 6 s after its container starts: the run sits in `up --wait`.
            wait_for(lambda: running(host, idle), 300, "the start of the idle slot's copy")
            time.sleep(1)
            kill(proc)
        assert live_slot(host) == slot and running(host, idle)
        assert json.loads(host.file(PROGRESS).content_string)["version"] == "1.3.1-slowstart"
        proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0")
    assert proc.returncode == 0, tail(proc)
    assert "INTERRUPTED RUN" in flat(proc)
    assert_no_failed_request(prober, {"1.0.0"})
    assert [e["status"] for e in ledger(host) if e["version"] == "1.3.1-slowstart"] == ["failed"]
    assert_consistent(host, "1.0.0")


def test_a_traffic_service_the_stack_does_not_have_is_refused_before_any_change(host):
    before = host.file("/var/lib/shipit/pulse/ledger.json").content_string
    proc = playbook("deploy.yml", extra={"shipit_version": "1.1.0", "compose_stack_traffic_service": "web"})
    assert proc.returncode != 0
    assert "compose_stack_traffic_service web is not a service of the Compose definition (it has postgres, pulse)" \
        in flat(proc) and "nothing was changed" in flat(proc), tail(proc)
    assert host.file("/var/lib/shipit/pulse/ledger.json").content_string == before


def test_a_slot_port_of_the_stack_taken_by_another_process_is_refused_before_any_change(host):
    port = SLOT_PORTS["green" if live_slot(host) == "blue" else "blue"]
    with squatting(host, port):
        before = host.file("/var/lib/shipit/pulse/ledger.json").content_string
        proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
        assert proc.returncode != 0
        assert f"port {port} is in use by" in flat(proc) and "not by docker.service" in flat(proc), tail(proc)
        assert "nothing was changed" in flat(proc), tail(proc)
        assert host.file("/var/lib/shipit/pulse/ledger.json").content_string == before
    assert_consistent(host, "1.0.0")
