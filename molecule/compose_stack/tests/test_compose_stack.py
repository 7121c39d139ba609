"""pulse + PostgreSQL as a Docker Compose stack on a host's own Docker engine: deploy with images pinned by
ID, upgrade with migration, check mode, automatic rollback of a broken release, manual rollback to pinned
images whatever the tags say, pruning by reference, refused rollbacks, and last traffic switching turned on
for the running stack. (Idempotence: Molecule's own step.)

Molecule's converge deployed 1.0.0. These tests run in file order, each building on the last: they drive
further runs of the collection's playbooks and check the host independently (docker compose ps, docker
inspect, docker image ls, HTTP from the host itself, SQL in the database, the file system).
"""

import json
import re
import sys
from pathlib import Path

# The scenarios' shared helpers live in molecule/shipit_molecule.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import LEDGER, changed_count, health, ledger, live  # noqa: E402
from shipit_molecule import playbook as run_playbook  # noqa: E402

APP_DIR = "/srv/pulse"
HOST = "shipit-molecule-compose"
BACKUPS = "/var/backups/shipit/pulse"
# The database password of host_vars/shipit-molecule-compose/vault.yml (vault-encrypted there).
CANARY = "canary-db-password-5f0c2a91e7d34b6c"
# The stack's PostgreSQL, backed up through its own container (trust on the socket inside it).
PG_VARS = {"db_backup_kind": "postgresql", "db_backup_pg_database": "pulse", "db_backup_pg_user": "pulse",
           "db_backup_pg_host": "/var/run/postgresql", "db_backup_pg_bin_dir": "/usr/lib/postgresql/15/bin",
           "db_backup_exec_prefix": ["docker", "compose", "--project-name", "pulse", "exec", "-T", "postgres"]}

testinfra_hosts = [HOST]


def playbook(name, *args, extra=None):
    return run_playbook(name, "-e", "shipit_hosts=stack", *args, extra=extra)


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
    assert CANARY in env.content_string and CANARY not in compose.content_string
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


def test_the_stacks_postgres_is_backed_up_and_restore_tested_through_its_container(host):
    databases = sql(host, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
    proc = playbook("backup.yml", extra=PG_VARS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    [manifest_path] = host.check_output(f"ls {BACKUPS}/*.manifest.json").split()
    manifest = json.loads(host.file(manifest_path).content_string)
    path = f"{BACKUPS}/{manifest['file']}"
    backup = host.file(path)
    assert manifest["db_kind"] == "postgresql" and path.endswith(".pgdump.zst")
    assert backup.mode == 0o600 and backup.size == manifest["size"]
    assert host.check_output(f"sha256sum {path}").split()[0] == manifest["sha256"]
    assert "public.visits" in manifest["tables"]
    proc = playbook("restore.yml", extra={**PG_VARS, "shipit_restore_test": True})
    assert proc.returncode == 0, proc.stdout[-3000:]
    # Restored into a scratch database, verified and dropped: the live data and databases are as they were.
    assert visits(host) == 3
    assert sql(host, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database") == databases
    assert health(host)["status"] == "healthy"


def test_check_mode_reports_a_new_release_and_changes_nothing(host):
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.0.0", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changed_count(proc, HOST) > 0, "check mode must report the release it would make"
    assert state(host) == before
    assert health(host)["version"] == "1.1.0"


def test_broken_release_is_rolled_back_automatically(host):
    # -vvv: every task's result is printed, as it reaches the runner's events; the stack's secret is in none.
    proc = playbook("deploy.yml", "-e", "shipit_version=1.2.0", "-vvv")
    assert proc.returncode != 0
    assert CANARY not in proc.stdout, "the stack's database password reached the output of a failed deploy"
    assert CANARY in host.file(f"{APP_DIR}/releases/{live(host)['release_id']}/.env").content_string  # used
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
    # Keep 1: the new release, plus the rollback target (1.0.0, live until now), which is never pruned.
    postgres_image = live(host)["images"]["postgres"]
    gone = {by_version(host, v)["images"]["pulse"] for v in ("1.1.0", "1.2.0")}
    proc = playbook("deploy.yml", "-e", "shipit_version=1.3.0", "-e", "compose_stack_keep_releases=1")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert health(host)["version"] == "1.3.0"
    kept = {e["release_id"]: e for e in ledger(host) if e["version"] in ("1.3.0", "1.0.0")}
    assert sorted(releases(host)) == sorted(kept)
    present = image_ids(host)
    assert present == {e["images"]["pulse"] for e in kept.values()} | {postgres_image}, present
    assert not present & gone
    assert visits(host) == 3
    assert_running(host, live(host))
    # The ledger agrees with the disk: the releases removed are recorded pruned, in the same call.
    statuses = {e["version"]: e["status"] for e in ledger(host)}
    assert (statuses["1.1.0"], statuses["1.2.0"]) == ("pruned", "pruned"), statuses


def test_rollback_to_a_pruned_release_is_refused(host):
    before = state(host)
    proc = playbook("rollback.yml", "-e", "shipit_rollback_to=1.1.0")
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "was pruned" in out and "its files are no longer on the host" in out, proc.stdout[-3000:]
    assert "nothing was changed" in out, proc.stdout[-3000:]
    assert state(host) == before


def test_history_prints_the_ledger(host):
    proc = playbook("history.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for version, status in (("1.2.0", "pruned"), ("1.0.0", "good"), ("1.3.0", "live")):
        assert re.search(rf"{re.escape(version)}\s+{status}", proc.stdout), proc.stdout


def test_turning_traffic_switching_on_for_the_running_stack(host):
    # The stack's own pulse container holds the public port: refused, naming it, until it is stopped once.
    before = state(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.3.0", "-e", "shipit_http_port=8080")
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert "the public port 8080 of pulse is in use by docker-proxy" in out and "nothing was changed" in out, proc.stdout[-3000:]
    assert "docker compose --project-name pulse stop <service>" in out, proc.stdout[-3000:]
    assert state(host) == before
    host.run_test("docker compose --project-name pulse stop pulse")
    # The live version again: its release ran in place, so a new release of it starts in a slot and gets the traffic.
    proc = playbook("deploy.yml", "-e", "shipit_version=1.3.0", "-e", "shipit_http_port=8080")
    assert proc.returncode == 0, proc.stdout[-3000:]
    entry = live(host)
    assert entry["version"] == "1.3.0" and entry["slot"] == "blue" and entry["release_id"] not in before[1], entry
    assert set(compose_ps(host)) == {"postgres", "pulse-blue"}, compose_ps(host)  # the old container is gone
    assert compose_ps(host)["postgres"]["ID"] == before[3]["postgres"]
    assert health(host)["version"] == "1.3.0" and visits(host) == 3
