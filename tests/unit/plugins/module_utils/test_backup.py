"""_backup against real SQLite databases and a real throwaway PostgreSQL 15 cluster (fixture in ../conftest.py)."""

import datetime
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _backup as b

from backup_testlib import PG_APP_PASSWORD  # tests/unit/plugins, on sys.path through its conftest.py


# -- helpers ----------------------------------------------------------------------------------------------

def make_sqlite(path, rows=200, wal=True):
    con = sqlite3.connect(path, isolation_level=None)
    if wal:
        con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, path TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
    con.execute("INSERT OR IGNORE INTO schema_version VALUES (1)")
    con.execute("BEGIN")
    for i in range(rows):
        con.execute("INSERT INTO visits (path) VALUES (?)", (f"/page/{i}",))
    con.execute("COMMIT")
    con.close()


def count(path, table="visits"):
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def sqlite_backup(tmp_path, db, **kwargs):
    directory = tmp_path / "backups" / "pulse"
    b.ensure_private_dir(str(directory))
    args = dict(directory=str(directory), app="pulse", kind="sqlite", compression="zstd", level=1, threads=None,
                tools=b.Tools(), sqlite_path=str(db))
    args.update(kwargs)
    return b.take_backup(**args)


def flip_byte(path, offset):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


# -- SQLite ----------------------------------------------------------------------------------------------

def test_rows_still_in_the_wal_are_in_the_backup_unlike_a_file_copy(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=10)
    # A writer that keeps its connection: its commits stay in pulse.db-wal (no checkpoint).
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("BEGIN")
    for i in range(500):
        writer.execute("INSERT INTO visits (path) VALUES (?)", (f"/wal/{i}",))
    writer.execute("COMMIT")
    assert os.path.getsize(f"{db}-wal") > 0
    # What a plain file copy of the main file gets: none of the rows in the WAL.
    plain = tmp_path / "plain-copy.db"
    plain.write_bytes(db.read_bytes())
    assert count(plain) == 10
    manifest = sqlite_backup(tmp_path, db)
    restored = tmp_path / "restored.db"
    with open(manifest["path"], "rb") as src, open(restored, "wb") as dst:
        b.subprocess.run(["zstd", "-dqc"], stdin=src, stdout=dst, check=True)
    assert count(restored) == 510
    writer.close()


def test_backup_is_consistent_while_a_writer_commits(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=20000)
    stop, committed = threading.Event(), []

    def write():
        con = sqlite3.connect(db, isolation_level=None, timeout=30)
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO visits (path) VALUES ('a')")
            con.execute("INSERT INTO visits (path) VALUES ('b')")  # pairs: a torn copy would show an odd count
            con.execute("COMMIT")
            committed.append(1)
        con.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.2)
        before = count(db)
        manifest = sqlite_backup(tmp_path, db)
    finally:
        stop.set()
        thread.join()
    assert committed, "the writer kept committing during the backup"
    restored = tmp_path / "restored.db"
    with open(manifest["path"], "rb") as src, open(restored, "wb") as dst:
        b.subprocess.run(["zstd", "-dqc"], stdin=src, stdout=dst, check=True)
    copied = count(restored)
    assert before <= copied <= count(db)
    assert copied % 2 == 0
    assert b.sqlite_verify(str(restored))["integrity_check"] == "ok"


def test_manifest_records_what_the_backup_is(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db)
    manifest = sqlite_backup(tmp_path, db, release_id="20261125T180000Z", live_release_id="20261120T090000Z",
                             live_version="1.0.0")
    on_disk = json.loads(open(manifest["manifest"], encoding="utf-8").read())
    assert on_disk["backup_id"] + ".manifest.json" == os.path.basename(manifest["manifest"])
    for key in ("app", "release_id", "live_release_id", "db_kind", "size", "sha256", "created_at", "tool_versions"):
        assert key in on_disk
    assert (on_disk["app"], on_disk["db_kind"], on_disk["release_id"]) == ("pulse", "sqlite", "20261125T180000Z")
    assert on_disk["sha256"] == hashlib.sha256(open(manifest["path"], "rb").read()).hexdigest()
    assert on_disk["size"] == os.path.getsize(manifest["path"])
    assert on_disk["tables"] == ["schema_version", "visits"]
    assert on_disk["tool_versions"]["sqlite"] == sqlite3.sqlite_version
    assert on_disk["tool_versions"]["zstd"][0].isdigit()
    assert on_disk["checks"] == {"integrity_check": "ok"}
    assert datetime.datetime.strptime(on_disk["created_at"], "%Y-%m-%dT%H:%M:%SZ")


def test_files_are_private_from_the_first_byte_even_under_a_lax_umask(tmp_path, monkeypatch):
    db = tmp_path / "pulse.db"
    make_sqlite(db)
    modes = []
    real_open = os.open

    def spy_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            modes.append((os.path.basename(path), stat.S_IMODE(os.fstat(fd).st_mode), bool(flags & os.O_EXCL)))
        return fd

    old = os.umask(0)
    try:
        monkeypatch.setattr(b.os, "open", spy_open)
        manifest = sqlite_backup(tmp_path, db)
    finally:
        os.umask(old)
    assert modes and all(mode == 0o600 and excl for _name, mode, excl in modes), modes
    directory = os.path.dirname(manifest["path"])
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for path in os.listdir(directory):
        assert stat.S_IMODE(os.stat(os.path.join(directory, path)).st_mode) == 0o600


def test_private_files_are_never_reused_or_followed(tmp_path):
    existing = tmp_path / "x"
    existing.write_text("")
    with pytest.raises(FileExistsError):
        b.create_private(str(existing))
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        b.create_private(str(tmp_path / "link"))
    (tmp_path / "dirlink").symlink_to(tmp_path)
    with pytest.raises(b.BackupError, match="symbolic link"):
        b.ensure_private_dir(str(tmp_path / "dirlink"))


def test_the_file_is_fsynced_with_its_directory_before_the_manifest_exists(tmp_path, monkeypatch):
    db = tmp_path / "pulse.db"
    make_sqlite(db)
    events = []
    real_fsync, real_fsync_dir, real_write_json = os.fsync, b._files.fsync_dir, b._files.write_json_atomic
    monkeypatch.setattr(b.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                   real_fsync(fd))[1])
    monkeypatch.setattr(b._files, "fsync_dir",
                        lambda path: (events.append(("fsync_dir", path)), real_fsync_dir(path))[1])
    monkeypatch.setattr(b._files, "write_json_atomic", lambda path, data, mode: (events.append(("manifest", path)),
                                                                                 real_write_json(path, data, mode))[1])
    manifest = sqlite_backup(tmp_path, db)
    directory = os.path.dirname(manifest["path"])
    kinds = [kind for kind, _ in events]
    first_manifest = kinds.index("manifest")
    assert ("fsync", os.path.join(directory, f".{manifest['backup_id']}.partial")) in events[:first_manifest]
    assert ("fsync_dir", directory) in events[:first_manifest]


def test_missing_database_fails_or_is_skipped_on_a_first_deploy(tmp_path):
    with pytest.raises(b.BackupError, match="does not exist"):
        sqlite_backup(tmp_path, tmp_path / "nope.db")
    assert sqlite_backup(tmp_path, tmp_path / "nope.db", missing_ok=True) is None


def test_a_corrupt_database_is_refused(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=5000, wal=False)
    flip_byte(db, 4096 * 3 + 200)  # inside a b-tree page, not the header
    with pytest.raises(b.BackupError, match="integrity_check"):
        sqlite_backup(tmp_path, db)
    directory = tmp_path / "backups" / "pulse"
    assert os.listdir(directory) == [], "no manifest, no partial file, no copy left behind"


def test_restore_stages_verifies_then_swaps_in_over_a_wal_database(tmp_path):
    db = tmp_path / "data" / "pulse.db"
    db.parent.mkdir()
    make_sqlite(db, rows=100)
    os.chmod(db, 0o640)
    manifest = sqlite_backup(tmp_path, db)
    # Newer data, some of it left in the -wal file of a crashed writer.
    make_sqlite(db, rows=50)
    keep = sqlite3.connect(db, isolation_level=None)
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    keep.execute("INSERT INTO visits (path) VALUES ('only-in-wal')")
    staged = b.stage_sqlite(manifest, str(db), b.Tools(), verify_sql=["SELECT count(*) = 100 FROM visits"])
    assert staged["checks"]["integrity_check"] == "ok"
    assert count(db) == 151, "staging does not touch the live database"
    keep.close()
    done = b.make_live_sqlite(manifest, str(db))
    assert done["replaced"] is None
    assert count(db) == 100
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o640
    assert sorted(os.listdir(db.parent)) == ["pulse.db"]


def test_restore_keeps_the_replaced_database_when_asked(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=10)
    manifest = sqlite_backup(tmp_path, db)
    make_sqlite(db, rows=10)
    b.stage_sqlite(manifest, str(db), b.Tools())
    done = b.make_live_sqlite(manifest, str(db), keep_previous=True)
    assert count(done["replaced"]) == 20 and count(db) == 10


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_damaged_backup_is_refused_before_anything_is_created(tmp_path, damage):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=3000)
    manifest = sqlite_backup(tmp_path, db)
    if damage == "flip":
        flip_byte(manifest["path"], manifest["size"] // 2)
        expected = f"backup {manifest['backup_id']} of pulse is corrupted: sha256 of {manifest['path']} is"
    elif damage == "truncate":
        os.truncate(manifest["path"], manifest["size"] - 10)
        expected = "is truncated or corrupted"
    else:
        os.unlink(manifest["path"])
        expected = "is unusable: its file"
    before = db.read_bytes()
    with pytest.raises(b.BackupError) as excinfo:
        b.stage_sqlite(manifest, str(db), b.Tools())
    assert expected in str(excinfo.value)
    assert db.read_bytes() == before
    assert not os.path.exists(b.sqlite_scratch(str(db))[0])


def test_a_restore_that_fails_its_verification_leaves_nothing(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db)
    manifest = sqlite_backup(tmp_path, db)
    with pytest.raises(b.BackupError, match="lacks the expected tables orders"):
        b.stage_sqlite(manifest, str(db), b.Tools(), expected_tables=["orders"])
    with pytest.raises(b.BackupError, match="returned 0"):
        b.stage_sqlite(manifest, str(db), b.Tools(), verify_sql=["SELECT count(*) FROM visits WHERE id < 0"])
    assert not os.path.exists(b.sqlite_scratch(str(db))[0])
    with pytest.raises(b.BackupError, match="is not staged"):
        b.make_live_sqlite(manifest, str(db))


def test_gzip_backups_restore_too(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db, rows=30)
    manifest = sqlite_backup(tmp_path, db, compression="gzip")
    assert manifest["file"].endswith(".sqlite3.gz") and manifest["tool_versions"]["gzip"]
    make_sqlite(db, rows=30)
    b.stage_sqlite(manifest, str(db), b.Tools())
    b.make_live_sqlite(manifest, str(db))
    assert count(db) == 30


# -- retention -------------------------------------------------------------------------------------------

def fake(backup_id, created_at, **extra):
    return dict({"backup_id": backup_id, "created_at": created_at, "file": f"{backup_id}.sqlite3.zst"}, **extra)


def test_retention_keeps_last_daily_weekly_by_manifest_dates():
    manifests = [
        fake("a", "2026-03-10T12:00:00Z"), fake("b", "2026-03-10T09:00:00Z"), fake("c", "2026-03-10T08:00:00Z"),
        fake("d", "2026-03-09T12:00:00Z"), fake("e", "2026-03-09T11:00:00Z"),
        fake("f", "2026-03-08T12:00:00Z"),                                     # Sunday: ISO week 10
        fake("g", "2026-03-02T12:00:00Z"),                                     # Monday, ISO week 10
        fake("h", "2026-02-20T12:00:00Z"),                                     # ISO week 8
        fake("i", "2026-01-01T12:00:00Z"), fake("j", "2025-12-01T12:00:00Z"),
    ]
    keep, prune = b.plan_retention(manifests, keep_last=2, keep_daily=3, keep_weekly=3)
    assert keep == {"a": "last", "b": "last", "d": "daily", "f": "daily", "h": "weekly"}
    assert [m["backup_id"] for m in prune] == ["c", "e", "g", "i", "j"]


def test_retention_never_prunes_backups_of_protected_releases():
    manifests = [
        fake("new", "2026-03-10T12:00:00Z", live_release_id="R2"),
        fake("before-r2", "2025-01-01T12:00:00Z", release_id="R2", live_release_id="R1"),
        fake("under-r1", "2024-12-31T12:00:00Z", live_release_id="R1"),
        fake("under-r0", "2024-06-01T12:00:00Z", live_release_id="R0"),
        fake("before-r1", "2024-05-01T12:00:00Z", release_id="R1", live_release_id="R0"),
    ]
    # R2 live, R1 the rollback target: the backup taken before R2 (= the newest taken while R1 was live) and the
    # one taken before R1 are kept; an older backup taken under R1 and one under R0 are not.
    keep, prune = b.plan_retention(manifests, 1, 0, 0, protected_releases=["R2", "R1"])
    assert keep == {"new": "last", "before-r2": "protected", "before-r1": "protected"}
    assert [m["backup_id"] for m in prune] == ["under-r1", "under-r0"]


def test_retention_removes_manifest_then_file_and_old_orphans(tmp_path):
    db = tmp_path / "pulse.db"
    make_sqlite(db)
    first = sqlite_backup(tmp_path, db)
    second = sqlite_backup(tmp_path, db)
    directory = os.path.dirname(first["path"])
    orphan = os.path.join(directory, ".20200101T000000Z.partial")
    open(orphan, "w").close()
    young = os.path.join(directory, ".20990101T000000Z.partial")
    open(young, "w").close()
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    manifests, invalid = b.list_manifests(directory)
    assert [m["backup_id"] for m in manifests] == [second["backup_id"], first["backup_id"]] and not invalid
    keep, plan = b.plan_retention(manifests, 1, 0, 0)
    assert b.prune(plan, b.orphans(directory, manifests)) == [first["backup_id"]]
    assert sorted(os.listdir(directory)) == sorted([os.path.basename(second["path"]),
                                                    os.path.basename(second["manifest"]),
                                                    os.path.basename(young)])


def test_select_latest_by_id_and_taken_under():
    manifests = [fake("2", "2026-03-10T12:00:00Z", live_release_id="R1"),
                 fake("1", "2026-03-09T12:00:00Z", live_release_id="R1")]
    assert b.select(manifests, "latest")["backup_id"] == "2"
    assert b.select(manifests, "1")["backup_id"] == "1"
    assert b.select(manifests, "9") is None and b.select([], "latest") is None
    assert b.taken_under(manifests, "R1")["backup_id"] == "2"
    assert b.taken_under(manifests, "R9") is None


# -- PostgreSQL ------------------------------------------------------------------------------------------

def pg_tools(postgres, database, password=PG_APP_PASSWORD, bin_dir=None):
    env, name, secrets = b.pg_connection(dsn=postgres.dsn(database, password))
    return b.Tools(pg_bin_dir=bin_dir or postgres.bin_dir, env=env, secrets=secrets), name


def pg_backup(tmp_path, postgres, database, **kwargs):
    tools, name = kwargs.pop("tools", None) or pg_tools(postgres, database)
    directory = tmp_path / "backups" / "shop"
    b.ensure_private_dir(str(directory))
    args = dict(directory=str(directory), app="shop", kind="postgresql", compression="zstd", level=1, threads=None,
                tools=tools, database=name)
    args.update(kwargs)
    return b.take_backup(**args), tools


def fill(postgres, database, rows=2000):
    postgres.psql("CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL); "
                  "CREATE TABLE notes (id int); "
                  f"INSERT INTO orders (item) SELECT 'item-' || g FROM generate_series(1, {rows}) g; "
                  "ALTER TABLE orders OWNER TO app; ALTER TABLE notes OWNER TO app", database)


def test_pg_dsn_is_parsed_into_the_environment_and_never_into_messages():
    env, database, secrets = b.pg_connection(dsn="postgresql://u%40x:p%3Aw%2Fd@db.example:6543/shop?sslmode=require")
    assert env == {"PGUSER": "u@x", "PGPASSWORD": "p:w/d", "PGHOST": "db.example", "PGPORT": "6543",
                   "PGDATABASE": "shop", "PGSSLMODE": "require"}
    assert database == "shop" and "p:w/d" in secrets
    with pytest.raises(b.BackupError) as excinfo:
        b.pg_connection(dsn="postgresql://u:topsecret@h/db?bogus=1")
    assert "topsecret" not in str(excinfo.value) and "bogus" in str(excinfo.value)
    with pytest.raises(b.BackupError, match="no PostgreSQL database"):
        b.pg_connection(host="h")


def test_pg_backup_stage_and_swap_as_an_unprivileged_owner(tmp_path, postgres):
    database = postgres.create_database()
    fill(postgres, database)
    manifest, tools = pg_backup(tmp_path, postgres, database)
    assert manifest["tables"] == ["public.notes", "public.orders"]
    assert manifest["checks"] == {"pg_restore_list": "ok", "table_data_entries": 2}
    assert manifest["tool_versions"]["pg_dump"].startswith("15.") and manifest["tool_versions"]["server"]
    assert manifest["sha256"] == hashlib.sha256(open(manifest["path"], "rb").read()).hexdigest()
    # A migration after the backup: a new column and a new table that references the old one.
    postgres.psql("ALTER TABLE orders ADD COLUMN agent text; DELETE FROM orders WHERE id > 5; "
                  "CREATE TABLE refs (order_id bigint REFERENCES orders(id)); ALTER TABLE refs OWNER TO app", database)
    staged = b.stage_pg(manifest, database, tools, verify_sql=["SELECT count(*) = 2000 FROM orders"])
    assert staged["scratch"] == f"{database}_shipit_restore"
    assert postgres.psql("SELECT count(*) FROM orders", database) == "5", "staging leaves the live database alone"
    done = b.make_live_pg(manifest, database, tools)
    assert done["replaced"] is None
    assert postgres.psql("SELECT count(*) FROM orders", database) == "2000"
    assert postgres.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                         "AND column_name = 'agent'", database) == "0"
    assert postgres.psql("SELECT to_regclass('refs') IS NULL", database) == "t"
    assert postgres.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'") == "app"
    assert postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{database}_shipit%'") == "0"
    assert "restored from backup " + manifest["backup_id"] in postgres.psql(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{database}'")


def test_pg_restore_test_stages_and_discards(tmp_path, postgres):
    database = postgres.create_database()
    fill(postgres, database, rows=10)
    manifest, tools = pg_backup(tmp_path, postgres, database, compression="gzip")
    assert manifest["file"].endswith(".pgdump.gz")
    b.stage_pg(manifest, database, tools)
    assert b.discard_pg(tools, database, "postgres") is True
    assert b.discard_pg(tools, database, "postgres") is False
    assert postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{database}_shipit%'") == "0"


def test_pg_corrupted_backup_is_refused_and_leaves_no_scratch_database(tmp_path, postgres):
    database = postgres.create_database()
    fill(postgres, database, rows=5000)
    manifest, tools = pg_backup(tmp_path, postgres, database)
    flip_byte(manifest["path"], manifest["size"] // 2)
    with pytest.raises(b.BackupError, match="is corrupted: sha256"):
        b.stage_pg(manifest, database, tools)
    assert postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{database}_shipit%'") == "0"


def test_pg_dump_that_exits_0_with_an_incomplete_archive_is_refused(tmp_path, postgres):
    database = postgres.create_database()
    fill(postgres, database, rows=5000)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("psql", "pg_restore"):
        (fake_bin / tool).symlink_to(os.path.join(postgres.bin_dir, tool))
    # A pg_dump whose output is cut short while it still exits 0 (as in `pg_dump | gzip > f` pipelines).
    (fake_bin / "pg_dump").write_text(f'#!/bin/sh\n"{postgres.bin_dir}/pg_dump" "$@" | head -c 20000\nexit 0\n')
    os.chmod(fake_bin / "pg_dump", 0o755)
    tools, name = pg_tools(postgres, database, bin_dir=str(fake_bin))
    with pytest.raises(b.BackupError, match="exited 0 but its archive is empty or incomplete"):
        pg_backup(tmp_path, postgres, database, tools=(tools, name))
    assert os.listdir(tmp_path / "backups" / "shop") == []


def test_pg_empty_database_is_refused_or_skipped(tmp_path, postgres):
    database = postgres.create_database()
    with pytest.raises(b.BackupError, match="holds no table"):
        pg_backup(tmp_path, postgres, database)
    assert pg_backup(tmp_path, postgres, database, missing_ok=True)[0] is None


def test_pg_errors_say_why_without_the_password(tmp_path, postgres):
    database = postgres.create_database()
    tools, name = pg_tools(postgres, database, password="wrong-" + PG_APP_PASSWORD)
    with pytest.raises(b.BackupError) as excinfo:
        pg_backup(tmp_path, postgres, database, tools=(tools, name))
    assert "password authentication failed" in str(excinfo.value)
    assert PG_APP_PASSWORD not in str(excinfo.value)
    tools, name = pg_tools(postgres, "no_such_db")
    with pytest.raises(b.BackupError, match='database "no_such_db" does not exist'):
        pg_backup(tmp_path, postgres, "no_such_db", tools=(tools, name))


def test_pg_tools_run_through_an_exec_prefix(tmp_path, postgres):
    database = postgres.create_database()
    fill(postgres, database, rows=10)
    env, name, secrets = b.pg_connection(dsn=postgres.dsn(database))
    # Like `docker compose exec -e PGPASSWORD`: the tool starts with a fresh environment, the password forwarded.
    prefix = tmp_path / "exec-prefix"
    prefix.write_text('#!/bin/sh\nexec env -i PATH=/usr/bin:/bin PGPASSWORD="$PGPASSWORD" "$@"\n')
    prefix.chmod(0o755)
    tools = b.Tools(exec_prefix=[str(prefix)], pg_bin_dir=postgres.bin_dir, env=env, secrets=secrets)
    argv = tools.argv(["pg_dump"])
    assert "PGUSER=app" in argv and f"PGDATABASE={database}" in argv
    assert not [arg for arg in argv if "PGPASSWORD" in arg or PG_APP_PASSWORD in arg]
    manifest, _ = pg_backup(tmp_path, postgres, database, tools=(tools, name))
    assert manifest["checks"]["table_data_entries"] == 2
