"""pulse + PostgreSQL as a Docker Compose stack on a host's own Docker engine: deploy with images pinned by
ID, upgrade with migration, check mode, automatic rollback of a broken release, manual rollback to pinned
images whatever the tags say, pruning by reference, refused rollbacks. (Idempotence: Molecule's own step.)

Molecule's converge deployed 1.0.0. These tests run in file order, each building on the last: they drive
further runs of the collection's playbooks and check the host independently (docker compose ps, docker
inspect, docker image ls, HTTP from the host itself, SQL in the database, the file system).

SHIPIT_BENCH=1 adds a last test that measures a deploy, an idempotent re-run and a rollback (median of 3).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
ARTIFACTS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts"
APP_DIR = "/srv/pulse"
LEDGER = "/var/lib/shipit/pulse/ledger.json"
KEEP = 3  # compose_stack_keep_releases in inventories/lab/group_vars/stack
HOST = "shipit-molecule-compose"

testinfra_hosts = [HOST]


def playbook(name, *args):
    """Run one of the collection's playbooks against the scenario's host, as a user would."""
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(REPO / "playbooks" / name),
            "-e", "shipit_hosts=stack", *args]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    # ansible-core 2.19 prints task errors on stderr: keep both streams, in order.
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                          check=False, env=env)


def changed_count(proc):
    match = re.search(rf"{HOST}\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:]
    return int(match.group(1))


def health(host):
    return json.loads(host.check_output("curl -s --max-time 5 http://127.0.0.1:8080/health"))


def visits(host):
    return json.loads(host.check_output("curl -s --max-time 5 http://127.0.0.1:8080/visits"))["count"]


def sql(host, query):
    """A query in the stack's database, through its own container (not through pulse)."""
    return host.check_output(
        f"docker compose --project-name pulse exec -T postgres psql -U pulse -d pulse -At -c {json.dumps(query)}")


def compose_ps(host):
    """{service: ps entry} of the pulse project, from `docker compose ps` (one JSON object per line)."""
    out = host.check_output("docker compose --project-name pulse ps --all --format json")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {entry["Service"]: entry for entry in entries}


def container_image(host, container_id):
    return host.check_output(f"docker inspect --format '{{{{.Image}}}}' {container_id}")


def image_ids(host):
    return set(host.check_output("docker image ls --no-trunc --format '{{.ID}}'").split())


def ledger(host):
    return json.loads(host.file(LEDGER).content_string)["releases"]


def live(host):
    [entry] = [e for e in ledger(host) if e["status"] == "live"]
    return entry


def by_version(host, version):
    return [e for e in ledger(host) if e["version"] == version][-1]


def releases(host):
    return host.check_output(f"ls {APP_DIR}/releases").split()


def assert_running(host, release):
    """Both services run healthy, each on exactly the image ID the release pins (ledger and images.json)."""
    ps = compose_ps(host)
    assert set(ps) == {"postgres", "pulse"}, ps
    for service, entry in ps.items():
        assert entry["State"] == "running" and entry["Health"] == "healthy", entry
        assert container_image(host, entry["ID"]) == release["images"][service]
    pinned = json.loads(host.file(f"{APP_DIR}/releases/{release['release_id']}/images.json").content_string)
    assert pinned == release["images"]
    assert host.file(f"{APP_DIR}/current").linked_to == f"{APP_DIR}/releases/{release['release_id']}"


def state(host):
    """What must not move when nothing is deployed: current, the releases, the ledger, the containers."""
    return (host.file(f"{APP_DIR}/current").linked_to, releases(host), host.file(LEDGER).content_string,
            {service: entry["ID"] for service, entry in compose_ps(host).items()})


def test_converge_deployed_1_0_0_with_pinned_images(host):
    body = health(host)
    assert (body["status"], body["version"], body["db"], body["schema"]) == ("healthy", "1.0.0", "ok", 1)
    entry = live(host)
    assert entry["version"] == "1.0.0" and entry["checksum"].startswith("sha256:")
    assert set(entry["images"]) == {"postgres", "pulse"}
    assert all(re.match(r"^sha256:[0-9a-f]{64}$", image) for image in entry["images"].values())
    assert_running(host, entry)


def test_release_files_pin_ids_and_keep_secrets_private(host):
    compose = host.file(f"{APP_DIR}/current/compose.yaml")
    images = re.findall(r"^\s+image:\s*(\S+)", compose.content_string, re.M)
    assert len(images) == 2 and all(image.startswith("sha256:") for image in images), images
    assert "pull_policy: never" in compose.content_string
    env = host.file(f"{APP_DIR}/current/.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert "POSTGRES_PASSWORD=" in env.content_string
    assert "lab-only-pulse-db-password" not in compose.content_string
    host.run_test(f"docker compose --project-directory {APP_DIR}/current config --quiet")


def test_services_get_an_init_and_rotated_logs(host):
    for entry in compose_ps(host).values():
        inspect = json.loads(host.check_output(f"docker inspect {entry['ID']}"))[0]
        assert inspect["HostConfig"]["Init"] is True
        log_config = inspect["HostConfig"]["LogConfig"]
        assert log_config["Type"] == "json-file"
        assert log_config["Config"] == {"max-file": "3", "max-size": "10m"}


def test_data_is_written_to_postgres(host):
    for _ in range(3):
        host.run_test("curl -sf -X POST http://127.0.0.1:8080/visits")
    assert visits(host) == 3
    assert sql(host, "SELECT count(*) FROM visits") == "3"


def test_upgrade_to_1_1_0_migrates_before_the_switch_and_keeps_data(host):
    postgres_before = compose_ps(host)["postgres"]["ID"]
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    body = health(host)
    assert (body["status"], body["version"], body["schema"]) == ("healthy", "1.1.0", 2)
    assert visits(host) == 3
    assert sql(host, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version") == "1,2"
    assert sql(host, "SELECT count(*) FROM information_schema.columns "
                     "WHERE table_name = 'visits' AND column_name = 'user_agent'") == "1"
    # The database's definition did not change: switched in order, it was left running as it was.
    assert compose_ps(host)["postgres"]["ID"] == postgres_before
    statuses = {e["version"]: e["status"] for e in ledger(host)}
    assert statuses == {"1.0.0": "good", "1.1.0": "live"}
    assert_running(host, live(host))
    assert live(host)["images"]["pulse"] != by_version(host, "1.0.0")["images"]["pulse"]


def test_check_mode_reports_a_new_release_and_changes_nothing(host):
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changed_count(proc) > 0, "check mode must report the release it would make"
    assert state(host) == before
    assert health(host)["version"] == "1.1.0"


def test_broken_release_is_rolled_back_automatically(host):
    proc = playbook("deploy.yml", "-e", "shipit_version=1.2.0")
    assert proc.returncode != 0
    assert "rolled back to 1.1.0 (healthy)" in proc.stdout, proc.stdout[-3000:]
    body = health(host)
    assert (body["status"], body["version"]) == ("healthy", "1.1.0")
    assert visits(host) == 3
    failed = by_version(host, "1.2.0")
    assert failed["status"] == "failed"
    # The reason says which container was unhealthy and what its healthcheck saw.
    assert "pulse-pulse-1 is unhealthy" in failed["reason"], failed["reason"]
    assert "HTTP Error 503" in failed["reason"], failed["reason"]
    assert set(failed["images"]) == {"postgres", "pulse"}
    assert live(host)["version"] == "1.1.0"
    assert_running(host, live(host))


def test_manual_rollback_uses_the_pinned_image_not_the_tag(host):
    # Move the tag of 1.0.0 onto 1.1.0's image: a rollback that trusted tags would now run 1.1.0.
    pinned = by_version(host, "1.0.0")["images"]["pulse"]
    host.run_test(f"docker tag {live(host)['images']['pulse']} shipit-molecule/pulse:1.0.0")
    assert pinned in image_ids(host)
    proc = playbook("rollback.yml", "-e", "shipit_rollback_to=1.0.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    body = health(host)
    assert (body["status"], body["version"], body["schema"]) == ("healthy", "1.0.0", 2)
    assert visits(host) == 3
    statuses = {e["version"]: e["status"] for e in ledger(host)}
    assert statuses == {"1.0.0": "live", "1.1.0": "rolled_back", "1.2.0": "failed"}
    assert_running(host, live(host))
    assert compose_ps(host)["pulse"]["Image"] == pinned


def test_prune_keeps_exactly_the_configured_number_of_releases_and_images(host):
    postgres_image = live(host)["images"]["postgres"]
    old = {v: by_version(host, v)["images"]["pulse"] for v in ("1.0.0", "1.1.0", "1.2.0")}
    for version in ("1.3.0", "1.4.0", "1.5.0"):
        proc = playbook("deploy.yml", "-e", f"shipit_version={version}")
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert health(host)["version"] == version
    kept = {e["release_id"]: e for e in ledger(host) if e["version"] in ("1.3.0", "1.4.0", "1.5.0")}
    assert sorted(releases(host)) == sorted(kept)
    assert len(kept) == KEEP
    present = image_ids(host)
    assert present == {e["images"]["pulse"] for e in kept.values()} | {postgres_image}, present
    assert not present & set(old.values())
    assert visits(host) == 3
    assert_running(host, live(host))


def test_rollback_to_a_pruned_release_is_refused(host):
    before = state(host)
    proc = playbook("rollback.yml", "-e", "shipit_rollback_to=1.1.0")
    assert proc.returncode != 0
    assert "is not on shipit-molecule-compose" in proc.stdout and "nothing was changed" in proc.stdout, proc.stdout[-3000:]
    assert state(host) == before


def test_history_prints_the_ledger(host):
    proc = playbook("history.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for version, status in (("1.2.0", "failed"), ("1.4.0", "good"), ("1.5.0", "live")):
        assert re.search(rf"{re.escape(version)}\s+{status}", proc.stdout), proc.stdout


@pytest.mark.skipif(os.environ.get("SHIPIT_BENCH") != "1", reason="benchmark: set SHIPIT_BENCH=1")
def test_bench_deploy_rerun_and_rollback(host):
    """Median of 3 wall times: a deploy of a new version (image shipped, loaded, migrated, switched in order,
    health-checked), an idempotent re-run of it, and a rollback to the release before."""
    versions = ("2.0.0", "2.0.1", "2.0.2")
    for version in versions:
        for argv in ([sys.executable, str(REPO / "examples/pulse/build.py"), "image", "--version", version,
                      "--tag", f"shipit-molecule/pulse:{version}"],
                     ["docker", "save", "--output", str(ARTIFACTS / f"pulse-{version}.image.tar"),
                      f"shipit-molecule/pulse:{version}"],
                     ["docker", "image", "rm", f"shipit-molecule/pulse:{version}"]):
            subprocess.run(argv, check=True, capture_output=True, timeout=600)
    times = {"deploy": [], "rerun": [], "rollback": []}

    def timed(kind, *args):
        started = time.monotonic()
        proc = playbook(*args)
        times[kind].append(time.monotonic() - started)
        assert proc.returncode == 0, proc.stdout[-3000:]
        return proc

    for version in versions:
        timed("deploy", "deploy.yml", "-e", f"shipit_version={version}")
        assert changed_count(timed("rerun", "deploy.yml", "-e", f"shipit_version={version}")) == 0
        timed("rollback", "rollback.yml")
        assert health(host)["status"] == "healthy" and visits(host) == 3
    report = {kind: {"median_s": round(statistics.median(values), 2), "runs_s": [round(v, 2) for v in values]}
              for kind, values in times.items()}
    # Molecule removes its ephemeral directory on destroy: the report goes where SHIPIT_BENCH_OUT says.
    out = Path(os.environ.get("SHIPIT_BENCH_OUT", REPO / ".cache" / "bench-compose_stack.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("BENCH " + json.dumps(report))
