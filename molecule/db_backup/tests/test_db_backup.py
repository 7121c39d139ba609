"""Database backups of pulse (SQLite, systemd) and of a host PostgreSQL on a real systemd host.

Molecule's converge deployed pulse 1.0.0 (its first deploy: no database yet, so no backup). These tests run in
file order, each building on the last: they drive the collection's playbooks as a user would and check the host
independently (sha256sum, stat, sqlite3, psql, HTTP from the host itself, systemctl).
"""

import json
import re
import shlex
import sys
import time
from pathlib import Path

# The scenarios' shared helpers live in molecule/shipit_molecule.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shipit_molecule import health, ledger, main_pid, playbook  # noqa: E402

HOST = "shipit-molecule-db-backup"
DB = "/srv/pulse/shared/data/pulse.db"
BACKUPS = "/var/backups/shipit/pulse"
PG_PASSWORD = "Sh0p-pw:s3cret"
# The host PostgreSQL's "shop" database: peer authentication as the postgres system user, no app service.
PG_VARS = {"db_backup_app": "shop", "db_backup_kind": "postgresql", "db_backup_pg_database": "shop",
           "db_backup_pg_host": "/var/run/postgresql", "db_backup_pg_os_user": "postgres", "db_backup_services": [],
           "db_backup_verify_sql": ["SELECT count(*) > 0 FROM orders"]}

testinfra_hosts = [HOST]


def sql(host, query, db=DB):
    return host.check_output(f"sqlite3 {db} {shlex.quote(query)}")


def visits(host):
    return int(sql(host, "SELECT count(*) FROM visits"))


def post_visits(host, n):
    for _ in range(n):
        host.run_test("curl -sf -X POST http://127.0.0.1:8080/visits")


def manifests(host, directory=BACKUPS):
    script = ("import glob, json, sys; print(json.dumps([json.load(open(f)) "
              "for f in glob.glob(sys.argv[1] + '/*.manifest.json')]))")
    out = host.check_output(f"python3 -c {shlex.quote(script)} {directory}")
    return sorted(json.loads(out), key=lambda m: (m["created_at"], m["backup_id"]))


def newest(host, directory=BACKUPS):
    return manifests(host, directory)[-1]


def psql(host, query, db="shop"):
    return host.check_output(f"runuser -u postgres -- psql -X -At -d {db} -c {shlex.quote(query)}")


def test_first_deploy_had_nothing_to_back_up(host):
    assert health(host)["version"] == "1.0.0"
    [entry] = ledger(host)
    assert "backup_id" not in entry
    assert manifests(host) == []


def test_backup_while_pulse_is_writing(host):
    post_visits(host, 3)
    before = visits(host)
    # A writer inside the host, bounded: 300 requests, then it stops by itself.
    host.run_test("systemd-run --unit=shipit-writer --collect sh -c "
                  "'for i in $(seq 1 300); do curl -sf -o /dev/null -X POST http://127.0.0.1:8080/visits; done'")
    proc = playbook("backup.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    deadline = time.monotonic() + 60
    while host.run("systemctl is-active --quiet shipit-writer").rc == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    after = visits(host)
    assert after == before + 300, "the writer must not have been disturbed"
    manifest = newest(host)
    assert re.search(rf"backup {manifest['backup_id']} of pulse \(sqlite", proc.stdout)
    assert manifest["db_kind"] == "sqlite" and manifest["app"] == "pulse" and manifest["compression"] == "zstd"
    assert manifest["live_version"] == "1.0.0" and manifest["release_id"] is None
    assert manifest["tool_versions"]["sqlite"] and manifest["tool_versions"]["zstd"]
    assert {"visits", "schema_version"} <= set(manifest["tables"])
    path = f"{BACKUPS}/{manifest['file']}"
    # Checked independently: sha256sum, stat, and the copy's own integrity check and row count.
    assert host.check_output(f"sha256sum {path}").split()[0] == manifest["sha256"]
    assert int(host.check_output(f"stat -c %s {path}")) == manifest["size"]
    for item, mode in ((path, "600"), (f"{BACKUPS}/{manifest['backup_id']}.manifest.json", "600"),
                       (BACKUPS, "700"), ("/var/backups/shipit", "700")):
        assert host.check_output(f"stat -c '%a %U' {item}") == f"{mode} root", item
    host.run_test(f"zstd -dqc {path} > /tmp/copy.db")
    assert sql(host, "PRAGMA integrity_check", "/tmp/copy.db") == "ok"
    copied = int(sql(host, "SELECT count(*) FROM visits", "/tmp/copy.db"))
    host.run_test("rm -f /tmp/copy.db")
    assert before <= copied <= after, (before, copied, after)
    # The app's own files stay the app's: nothing the backup opened as root is left owned by root.
    owners = host.check_output(f"stat -c %U {DB}*").split()
    assert set(owners) == {"pulse"}, owners
    assert health(host)["status"] == "healthy"


def test_restore_test_leaves_the_live_database_alone(host):
    pid, count = main_pid(host), visits(host)
    proc = playbook("restore.yml", "-e", "shipit_restore_test=true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"restore test of backup \S+ of pulse passed", proc.stdout), proc.stdout[-3000:]
    assert re.search(r'integrity_check\W+ok', proc.stdout)
    assert (main_pid(host), visits(host)) == (pid, count)
    assert host.run("ls -a /srv/pulse/shared/data | grep shipit").stdout == ""


def test_corrupted_or_truncated_backup_is_refused_before_anything_is_touched(host):
    # A copy of the newest backup under a newer id, so that damaging it spares the real one.
    original = newest(host)
    manifest = dict(original, backup_id="20991231T000000Z", created_at="2099-12-31T00:00:00Z",
                    file="20991231T000000Z.sqlite3.zst")
    path = f"{BACKUPS}/{manifest['file']}"
    host.run_test(f"cp -p {BACKUPS}/{original['file']} {path}")
    host.run_test(f"printf %s {shlex.quote(json.dumps(manifest))} > {BACKUPS}/{manifest['backup_id']}.manifest.json")
    pid, count = main_pid(host), visits(host)
    db_sum = host.check_output(f"sha256sum {DB}").split()[0]
    host.run_test(f"printf 'XX' | dd of={path} bs=1 seek={manifest['size'] // 2} conv=notrunc status=none")
    proc = playbook("restore.yml", "-e", f"shipit_backup={manifest['backup_id']}")
    assert proc.returncode != 0
    assert f"backup {manifest['backup_id']} of pulse is corrupted: sha256 of {path} is" in proc.stdout
    assert "nothing was changed" in proc.stdout
    host.run_test(f"truncate -s -100 {path}")
    proc = playbook("restore.yml", "-e", f"shipit_backup={manifest['backup_id']}")
    assert proc.returncode != 0
    assert f"backup {manifest['backup_id']} of pulse is truncated or corrupted: {path} has" in proc.stdout
    assert (main_pid(host), visits(host)) == (pid, count)
    assert host.check_output(f"sha256sum {DB}").split()[0] == db_sum
    assert host.run("ls -a /srv/pulse/shared/data | grep shipit").stdout == ""
    host.run_test(f"rm {path} {BACKUPS}/{manifest['backup_id']}.manifest.json")


def test_deploy_takes_a_backup_first_and_links_it_in_the_ledger(host):
    post_visits(host, 5)
    before_deploy = visits(host)
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert health(host)["schema"] == 2
    # The backup was taken before the migration: its copy has the 1.0.0 schema and every row.
    entry = next(e for e in ledger(host) if e["version"] == "1.1.0")
    old = next(e for e in ledger(host) if e["version"] == "1.0.0")
    manifest = newest(host)
    assert entry["backup_id"] == manifest["backup_id"]
    assert (manifest["release_id"], manifest["live_release_id"]) == (entry["release_id"], old["release_id"])
    path = f"{BACKUPS}/{manifest['file']}"
    host.run_test(f"zstd -dqc {path} > /tmp/copy.db")
    assert sql(host, "SELECT group_concat(version) FROM schema_version", "/tmp/copy.db") == "1"
    assert int(sql(host, "SELECT count(*) FROM visits", "/tmp/copy.db")) == before_deploy
    host.run_test("rm -f /tmp/copy.db")
    post_visits(host, 2)
    assert visits(host) == before_deploy + 2
    test_deploy_takes_a_backup_first_and_links_it_in_the_ledger.before_deploy = before_deploy


def test_rollback_with_data_undoes_the_migration(host):
    before_deploy = test_deploy_takes_a_backup_first_and_links_it_in_the_ledger.before_deploy
    backup_id = next(e for e in ledger(host) if e["version"] == "1.1.0")["backup_id"]
    proc = playbook("rollback.yml", "-e", "shipit_rollback_restore_db=true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"With data: restoring backup {backup_id}" in proc.stdout
    body = health(host)
    assert (body["status"], body["version"], body["schema"]) == ("healthy", "1.0.0", 1)
    assert sql(host, "SELECT group_concat(version) FROM schema_version") == "1"
    assert "user_agent" not in sql(host, "SELECT group_concat(name) FROM pragma_table_info('visits')")
    assert visits(host) == before_deploy, "the rows written before the deploy, and only those"
    assert host.run("ls -a /srv/pulse/shared/data | grep shipit").stdout == ""
    assert set(host.check_output(f"stat -c %U {DB}*").split()) == {"pulse"}


def test_rollback_is_code_only_by_default_and_says_so(host):
    proc = playbook("deploy.yml", "-e", "shipit_version=1.1.0")
    assert proc.returncode == 0, proc.stdout[-3000:]
    proc = playbook("rollback.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Code only: the database is left as it is" in proc.stdout
    body = health(host)
    assert (body["version"], body["schema"]) == ("1.0.0", 2)


def test_restore_latest_over_the_live_database(host):
    manifest = newest(host)
    pid = main_pid(host)
    post_visits(host, 4)
    proc = playbook("restore.yml", "-e", "shipit_backup=latest")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"Restoring backup {manifest['backup_id']} of pulse" in proc.stdout
    assert main_pid(host) != pid, "pulse was stopped for the swap and started again"
    assert health(host)["status"] == "healthy"
    host.run_test(f"zstd -dqc {BACKUPS}/{manifest['file']} > /tmp/copy.db")
    assert visits(host) == int(sql(host, "SELECT count(*) FROM visits", "/tmp/copy.db"))
    host.run_test("rm -f /tmp/copy.db")


def test_production_restore_needs_a_confirmation(host):
    pid = main_pid(host)
    proc = playbook("restore.yml", "-e", "shipit_environment=production")
    assert proc.returncode != 0
    assert "add -e shipit_restore_confirm=pulse; nothing was changed" in proc.stdout
    assert main_pid(host) == pid


def test_retention_prunes_by_manifest_dates_and_keeps_protected_backups(host):
    live = next(e for e in ledger(host) if e["status"] == "live")
    template = newest(host)
    fakes = {  # backup id -> (created_at, release_id)
        "20260110T100000Z": ("2026-01-10T10:00:00Z", None),   # daily (2nd day), weekly (ISO week 2)
        "20260110T080000Z": ("2026-01-10T08:00:00Z", None),   # same day, older: pruned
        "20260109T100000Z": ("2026-01-09T10:00:00Z", None),   # daily (3rd day)
        "20260105T100000Z": ("2026-01-05T10:00:00Z", None),   # 4th day, ISO week 2 again: pruned
        "20251220T100000Z": ("2025-12-20T10:00:00Z", None),   # weekly (3rd week)
        "20250602T100000Z": ("2025-06-02T10:00:00Z", None),   # old: pruned
        "20250601T100000Z": ("2025-06-01T10:00:00Z", live["release_id"]),  # taken before the live release: kept
    }
    for backup_id, (created_at, release_id) in fakes.items():
        fake = dict(template, backup_id=backup_id, created_at=created_at, release_id=release_id,
                    live_release_id=None, file=f"{backup_id}.sqlite3.zst")
        fake.pop("path", None)
        host.run_test(f"cp {BACKUPS}/{template['file']} {BACKUPS}/{fake['file']}")
        host.run_test(f"printf %s {shlex.quote(json.dumps(fake))} > {BACKUPS}/{backup_id}.manifest.json")
    real_before = [m["backup_id"] for m in manifests(host) if m["backup_id"] not in fakes]
    proc = playbook("backup.yml", extra={"db_backup_keep_last": 2, "db_backup_keep_daily": 3,
                                         "db_backup_keep_weekly": 3})
    assert proc.returncode == 0, proc.stdout[-3000:]
    remaining = {m["backup_id"] for m in manifests(host)}
    new = newest(host)["backup_id"]
    expected = {new, real_before[-1], "20260110T100000Z", "20260109T100000Z", "20251220T100000Z",
                "20250601T100000Z"}
    assert remaining == expected
    files = set(host.check_output(f"ls {BACKUPS}").split())
    assert files == {f"{b}.manifest.json" for b in expected} | {f"{b}.sqlite3.zst" for b in expected}


def test_postgresql_backup_restore_test_and_restore(host):
    proc = playbook("backup.yml", extra=PG_VARS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    manifest = newest(host, "/var/backups/shipit/shop")
    assert manifest["db_kind"] == "postgresql" and manifest["file"].endswith(".pgdump.zst")
    assert manifest["tables"] == ["public.orders"] and manifest["checks"]["table_data_entries"] == 1
    assert manifest["tool_versions"]["pg_dump"].startswith("15.")
    path = f"/var/backups/shipit/shop/{manifest['file']}"
    assert host.check_output(f"sha256sum {path}").split()[0] == manifest["sha256"]
    assert "TABLE DATA public orders" in host.check_output(f"zstd -dqc {path} | pg_restore --list")

    proc = playbook("restore.yml", "-e", "shipit_restore_test=true", extra=PG_VARS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "restore test of backup" in proc.stdout
    assert psql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_shipit%'", "postgres") == "0"

    psql(host, "DELETE FROM orders WHERE id > 10")
    proc = playbook("restore.yml", "-e", "shipit_backup=latest", extra=PG_VARS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert psql(host, "SELECT count(*) FROM orders") == "1000"
    assert psql(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'", "postgres") == "shop_app"
    assert psql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_shipit%'", "postgres") == "0"

    psql(host, "DELETE FROM orders WHERE id > 20")
    host.run_test(f"printf 'XX' | dd of={path} bs=1 seek={manifest['size'] // 2} conv=notrunc status=none")
    proc = playbook("restore.yml", "-e", "shipit_backup=latest", extra=PG_VARS)
    assert proc.returncode != 0
    assert "of shop is corrupted: sha256" in proc.stdout
    assert psql(host, "SELECT count(*) FROM orders") == "20"


def test_postgresql_dsn_password_is_never_printed(host):
    extra = {k: v for k, v in PG_VARS.items() if not k.startswith("db_backup_pg_")}
    extra["db_backup_pg_dsn"] = f"postgresql://shop_app:{PG_PASSWORD.replace(':', '%3A')}@127.0.0.1:5432/shop"
    extra["db_backup_compression"] = "gzip"
    proc = playbook("backup.yml", "-v", extra=extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert newest(host, "/var/backups/shipit/shop")["file"].endswith(".pgdump.gz")
    assert PG_PASSWORD not in proc.stdout and "Sh0p-pw" not in proc.stdout
    extra["db_backup_pg_dsn"] = extra["db_backup_pg_dsn"].replace("Sh0p-pw", "Wrong-pw")
    proc = playbook("backup.yml", "-v", extra=extra)
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stdout
    assert "Wrong-pw" not in proc.stdout
