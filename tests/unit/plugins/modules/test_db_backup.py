"""db_backup, db_backup_info and db_restore as real collection modules (ansible ad-hoc on localhost)."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backup_testlib import PG_APP_PASSWORD  # tests/unit/plugins, on sys.path through its conftest.py

REPO_ROOT = Path(__file__).resolve().parents[4]


def run_module(module, args, check=False, verbose=False):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m",
            f"shipit.deploy.{module}", "-e", f"ansible_python_interpreter={sys.executable}", "-a", json.dumps(args)]
    if check:
        argv += ["--check"]
    if verbose:
        argv += ["-vvv"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout[proc.stdout.index("{"):])["plays"][0]["tasks"][0]["hosts"]["localhost"]
    result["_raw"] = proc.stdout + proc.stderr
    return result


@pytest.fixture()
def sqlite_app(tmp_path):
    db = tmp_path / "data" / "pulse.db"
    db.parent.mkdir()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, path TEXT)")
    con.executemany("INSERT INTO visits (path) VALUES (?)", [(f"/{i}",) for i in range(100)])
    con.close()
    return {"app": "pulse", "kind": "sqlite", "sqlite_path": str(db), "backup_dir": str(tmp_path / "backups")}


def rows(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM visits").fetchone()[0]
    finally:
        con.close()


def test_backup_check_mode_predicts_and_writes_nothing(sqlite_app, tmp_path):
    result = run_module("db_backup", sqlite_app, check=True)
    assert result["changed"] and result["backup_id"] and result["backup"]["db_kind"] == "sqlite"
    assert not (tmp_path / "backups").exists()
    real = run_module("db_backup", sqlite_app)
    assert real["changed"] and real["backup"]["sha256"] and real["backup"]["size"] > 0
    assert sorted(os.listdir(real["directory"])) == sorted([real["backup"]["file"], f"{real['backup_id']}.manifest.json"])


def test_backup_prunes_by_retention_and_check_mode_only_predicts(sqlite_app):
    ids = [run_module("db_backup", dict(sqlite_app, keep_last=10))["backup_id"] for _ in range(3)]
    predicted = run_module("db_backup", dict(sqlite_app, keep_last=2, keep_daily=0, keep_weekly=0), check=True)
    assert predicted["pruned"] == ids[1::-1]  # newest first
    info = run_module("db_backup_info", {"app": "pulse", "backup_dir": sqlite_app["backup_dir"]})
    assert [b["backup_id"] for b in info["backups"]] == ids[::-1]
    real = run_module("db_backup", dict(sqlite_app, keep_last=2, keep_daily=0, keep_weekly=0))
    assert real["pruned"] == ids[1::-1]
    info = run_module("db_backup_info", {"app": "pulse", "backup_dir": sqlite_app["backup_dir"]})
    assert [b["backup_id"] for b in info["backups"]] == [real["backup_id"], ids[2]]


def test_backup_failures_say_what_and_why(sqlite_app, tmp_path):
    result = run_module("db_backup", dict(sqlite_app, sqlite_path=str(tmp_path / "missing.db")))
    assert result["failed"]
    assert result["msg"] == f"backing up the sqlite database of pulse: the SQLite database {tmp_path}/missing.db does not exist"
    skipped = run_module("db_backup", dict(sqlite_app, sqlite_path=str(tmp_path / "missing.db"), missing_ok=True))
    assert not skipped["changed"] and skipped["backup_id"] is None and "nothing to back up yet" in skipped["skipped_reason"]
    bad = run_module("db_backup", dict(sqlite_app, app="../etc"))
    assert bad["failed"] and "app '../etc' is not a safe name" in bad["msg"]


def test_info_verify_refuses_a_corrupted_backup_with_a_clear_message(sqlite_app):
    taken = run_module("db_backup", sqlite_app)
    with open(taken["backup"]["path"], "r+b") as handle:
        handle.seek(10)
        handle.write(b"XX")
    args = {"app": "pulse", "backup_dir": sqlite_app["backup_dir"], "backup": "latest", "verify": True}
    result = run_module("db_backup_info", args)
    assert result["failed"]
    assert f"backup {taken['backup_id']} of pulse is corrupted: sha256 of {taken['backup']['path']}" in result["msg"]
    assert result["msg"].endswith("nothing was changed")
    missing = run_module("db_backup_info", dict(args, backup="20200101T000000Z"))
    assert missing["failed"] and "there is no backup 20200101T000000Z" in missing["msg"]


def test_restore_staged_live_absent_and_their_check_modes(sqlite_app):
    taken = run_module("db_backup", sqlite_app)
    con = sqlite3.connect(sqlite_app["sqlite_path"], isolation_level=None)
    con.execute("DELETE FROM visits WHERE id > 10")
    con.close()
    args = dict(sqlite_app, backup="latest")
    scratch = os.path.join(os.path.dirname(sqlite_app["sqlite_path"]), ".pulse.db.shipit-restore")
    check = run_module("db_restore", args, check=True)
    assert check["changed"] and check["backup"]["backup_id"] == taken["backup_id"] and not os.path.exists(scratch)
    staged = run_module("db_restore", args)
    assert staged["changed"] and staged["checks"]["integrity_check"] == "ok" and os.path.exists(scratch)
    assert rows(sqlite_app["sqlite_path"]) == 10
    live = run_module("db_restore", dict(args, state="live"))
    assert live["changed"] and rows(sqlite_app["sqlite_path"]) == 100 and not os.path.exists(scratch)
    assert run_module("db_restore", dict(sqlite_app, state="absent"))["changed"] is False
    run_module("db_restore", args)
    assert run_module("db_restore", dict(sqlite_app, state="absent"), check=True)["changed"] is True
    assert os.path.exists(scratch)
    assert run_module("db_restore", dict(sqlite_app, state="absent"))["changed"] is True
    assert not os.path.exists(scratch)


def test_restore_live_without_staging_is_refused(sqlite_app):
    run_module("db_backup", sqlite_app)
    result = run_module("db_restore", dict(sqlite_app, backup="latest", state="live"))
    assert result["failed"] and "is not staged for" in result["msg"]


def test_postgres_password_and_dsn_are_never_printed(tmp_path, postgres):
    database = postgres.create_database()
    postgres.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO app", database)
    base = {"app": "shop", "kind": "postgresql", "backup_dir": str(tmp_path / "b"), "pg_bin_dir": postgres.bin_dir}
    by_parts = dict(base, database=database, pg_host="127.0.0.1", pg_port=postgres.port, pg_user="app",
                    pg_password=PG_APP_PASSWORD)
    result = run_module("db_backup", by_parts, verbose=True)
    assert result["changed"] and result["backup"]["tables"] == ["public.t"], result["_raw"][-2000:]
    assert PG_APP_PASSWORD not in result["_raw"]
    by_dsn = dict(base, pg_dsn=postgres.dsn(database))
    result = run_module("db_backup", by_dsn, verbose=True)
    assert result["changed"]
    assert postgres.dsn(database) not in result["_raw"] and PG_APP_PASSWORD not in result["_raw"]
    wrong = dict(base, pg_dsn=postgres.dsn(database, password="Wr0ng-secret"))
    result = run_module("db_backup", wrong, verbose=True)
    assert result["failed"] and "password authentication failed" in result["msg"]
    assert "Wr0ng-secret" not in result["_raw"]
    staged = run_module("db_restore", dict(by_dsn, backup="latest"))
    assert staged["changed"] and staged["scratch"] == f"{database}_shipit_restore"
    live = run_module("db_restore", dict(by_dsn, backup="latest", state="live"))
    assert live["changed"] and live["checks"]["tables"] == ["public.t"]
    assert postgres.psql("SELECT count(*) FROM t", database) == "1"
