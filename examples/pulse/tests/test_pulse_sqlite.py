"""The real server from an unpacked release, on SQLite."""

import signal
import sqlite3
import subprocess
import sys

from pulse_testlib import SRC


def test_serve_health_visits_404_and_sigterm(release, serve, sqlite_url):
    app = release("1.1.0")
    assert app.run("migrate", database_url=sqlite_url).returncode == 0
    server = serve(app, sqlite_url)

    assert server.get("/health") == (200, {"status": "healthy", "version": "1.1.0", "db": "ok", "schema": 2})
    assert server.get("/version") == (200, {"version": "1.1.0"})
    assert server.get("/visits") == (200, {"count": 0})
    assert server.post("/visits", {"path": "/home"}, headers={"User-Agent": "pulse-test/1"}) == (201, {"id": 1})
    assert server.post("/visits") == (201, {"id": 2})  # the body is optional
    assert server.get("/visits") == (200, {"count": 2})
    assert server.post("/visits", b"not json")[0] == 400
    assert server.post("/visits", {"path": 5})[0] == 400
    assert server.get("/nope") == (404, {"error": "not found", "path": "/nope"})
    assert server.get("/health?verbose=1")[0] == 200  # query strings are ignored

    code, seconds = server.stop(signal.SIGTERM)
    assert code == 0
    assert seconds < 1.5
    log = server.log()
    assert '"GET /health HTTP/1.1" 200' in log
    assert '"POST /visits HTTP/1.1" 201' in log
    assert '"GET /nope HTTP/1.1" 404' in log
    assert "stopped on SIGTERM" in log

    rows = sqlite3.connect(sqlite_url[len("sqlite:///"):]).execute(
        "SELECT id, path, user_agent FROM visits ORDER BY id").fetchall()
    assert rows == [(1, "/home", "pulse-test/1"), (2, None, "Python-urllib/%d.%d" % sys.version_info[:2])]


def test_sigint_exits_zero_quickly(release, serve, sqlite_url):
    server = serve(release("1.0.0"), sqlite_url)
    code, seconds = server.stop(signal.SIGINT)
    assert (code, seconds < 1.5) == (0, True)


def test_broken_build_fails_health_but_serves(release, serve, sqlite_url):
    app = release("1.0.0", broken=True)
    app.run("migrate", database_url=sqlite_url)
    server = serve(app, sqlite_url)
    status, body = server.get("/health")
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["reason"] == "deliberately broken build"
    assert body["version"] == "1.0.0"
    assert server.post("/visits", {"path": "/"}) == (201, {"id": 1})
    assert (app.root / "RELEASE.json").read_text().count('"broken": true') == 1


def test_newer_code_needs_migrate_then_is_healthy(release, serve, sqlite_url):
    old, new = release("1.0.0"), release("1.1.0")
    first = old.run("migrate", database_url=sqlite_url)
    assert first.stdout.splitlines() == ["applied migration 1: create table visits", "schema version 1"]

    server = serve(new, sqlite_url)
    status, body = server.get("/health")
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["schema"] == 1
    assert "schema version 1 is older than the 2 this code needs" in body["db"]
    check = new.run("check-db", database_url=sqlite_url)
    assert check.returncode == 1
    assert "run `pulse migrate`" in check.stderr

    second = new.run("migrate", database_url=sqlite_url)
    assert second.returncode == 0
    assert second.stdout.splitlines() == ["applied migration 2: add visits.user_agent", "schema version 2"]
    assert server.get("/health")[0] == 200  # no restart needed
    assert new.run("check-db", database_url=sqlite_url).returncode == 0


def test_old_code_accepts_newer_schema(release, serve, sqlite_url):
    release("1.1.0").run("migrate", database_url=sqlite_url)
    old = release("1.0.0")
    assert old.run("check-db", database_url=sqlite_url).returncode == 0
    server = serve(old, sqlite_url)
    assert server.get("/health") == (200, {"status": "healthy", "version": "1.0.0", "db": "ok", "schema": 2})
    assert server.post("/visits", {"path": "/rollback"}) == (201, {"id": 1})


def test_migrate_is_idempotent_and_uses_wal(release, sqlite_url):
    app = release("1.1.0")
    first = app.run("migrate", database_url=sqlite_url)
    again = app.run("migrate", database_url=sqlite_url)
    assert (first.returncode, again.returncode) == (0, 0)
    assert "applied migration 1" in first.stdout and "applied migration 2" in first.stdout
    assert again.stdout.splitlines() == ["nothing to apply", "schema version 2"]
    db = sqlite3.connect(sqlite_url[len("sqlite:///"):])
    assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,)]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_missing_database_directory_fails_clearly(release, serve, tmp_path):
    url = f"sqlite:///{tmp_path}/no-such-dir/pulse.db"
    app = release("1.0.0")
    migrate = app.run("migrate", database_url=url)
    assert migrate.returncode == 1
    assert f"SQLite database directory {tmp_path}/no-such-dir does not exist" in migrate.stderr
    assert not (tmp_path / "no-such-dir").exists()

    check = app.run("check-db", database_url=url)
    assert check.returncode == 1 and "does not exist" in check.stderr
    status, body = serve(app, url).get("/health")
    assert status == 503 and "does not exist" in body["db"]


def test_unmigrated_database_is_not_created_by_health(release, serve, sqlite_url, tmp_path):
    status, body = serve(release("1.0.0"), sqlite_url).get("/health")
    assert status == 503
    assert "run `pulse migrate`" in body["db"]
    assert not (tmp_path / "pulse.db").exists()


def test_version_command_and_launcher_through_symlink(release, tmp_path):
    app = release("1.0.0")
    assert app.run("version").stdout == "1.0.0\n"
    link = tmp_path / "pulse"
    link.symlink_to(app.bin)
    out = subprocess.run([str(link), "version"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout == "1.0.0\n"
    assert not list(app.root.rglob("__pycache__"))  # the launcher leaves the release dir untouched


def test_python_m_pulse_from_source(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pulse", "version"], cwd=SRC, capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stdout == "dev\n"


def test_missing_database_url_is_a_usage_error(release):
    result = release("1.0.0").run("check-db")
    assert result.returncode == 2
    assert "PULSE_DATABASE_URL is not set" in result.stderr
