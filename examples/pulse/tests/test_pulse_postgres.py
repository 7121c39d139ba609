"""pgwire and the app against a real, throwaway PostgreSQL 15 (see the postgres fixture)."""

import subprocess
import time

import pytest

from pulse_testlib import PG_PASSWORDS, free_port
from pulse import pgwire
from pulse.storage import StorageError, parse_postgres_url, redact_url


def test_roles_use_the_intended_password_hashes(postgres):
    stored = postgres.psql("SELECT rolname || '=' || left(rolpassword, 13) FROM pg_authid "
                           "WHERE rolname LIKE 'pulse%' ORDER BY rolname").splitlines()
    assert stored[0] == "pulse=SCRAM-SHA-256"
    assert stored[1].startswith("pulse_md5=md5")


@pytest.mark.parametrize("user, method", [("pulse", "SCRAM-SHA-256"), ("pulse_md5", "md5"),
                                          ("pulse_plain", "password")])
def test_auth_methods(postgres, user, method):
    with pgwire.connect(**postgres.connect_args(user=user)) as conn:
        assert conn.auth_method == method
        assert conn.query("SELECT current_user, 1 + 1, true") == [(user, 2, True)]
        assert conn.parameters["server_version"].startswith("15")


@pytest.mark.parametrize("user", ["pulse", "pulse_md5", "pulse_plain"])
def test_wrong_password_is_the_servers_error(postgres, user):
    with pytest.raises(pgwire.ServerError) as raised:
        pgwire.connect(**postgres.connect_args(user=user, password="wrong"))
    assert str(raised.value) == f'password authentication failed for user "{user}"'
    assert raised.value.sqlstate == "28P01"


def test_connect_timeout_and_refused():
    started = time.monotonic()
    with pytest.raises(pgwire.Error, match="cannot connect to PostgreSQL at 127.0.0.1"):
        pgwire.connect(host="127.0.0.1", port=free_port(), user="x", password="x", timeout=2)
    assert time.monotonic() - started < 2.5


def test_errors_leave_the_connection_usable(postgres):
    with pgwire.connect(**postgres.connect_args()) as conn:
        with pytest.raises(pgwire.ServerError, match="division by zero") as raised:
            conn.query("SELECT 1/0")
        assert raised.value.sqlstate == "22012"
        assert conn.query("SELECT 1") == [(1,)]
        with pytest.raises(pgwire.ServerError, match='relation "nope" does not exist'):
            conn.query("SELECT * FROM nope WHERE x = $1", [1])
        assert conn.query("SELECT $1::int", [2]) == [(2,)]


def test_parameters_cannot_inject_sql(postgres):
    database = postgres.create_database()
    nasty = ["'; DROP TABLE t; --", "back\\slash \\' E'x'", "ünïcödé ✓", "$1 ? %s", "", None, "a\nb"]
    with pgwire.connect(**postgres.connect_args(database)) as conn:
        conn.query("CREATE TABLE t (id serial PRIMARY KEY, v text); CREATE TABLE keep (x int)")
        for value in nasty:
            conn.query("INSERT INTO t (v) VALUES ($1)", [value])
        assert [row[0] for row in conn.query("SELECT v FROM t ORDER BY id")] == nasty
        assert conn.query("SELECT $1::text = $2::text, $3::bool", ["x'y", "x'y", False]) == [(True, False)]
        assert conn.query("SELECT to_regclass('keep') IS NOT NULL") == [(True,)]


def test_dsn_parsing():
    params = parse_postgres_url("postgresql://app:p%40ss%3Aw%2Frd@db.example:6543/pulse?connect_timeout=3")
    assert params == {"host": "db.example", "port": 6543, "user": "app", "password": "p@ss:w/rd",
                      "database": "pulse", "timeout": 3.0}
    assert parse_postgres_url("postgres://app@[::1]/x")["host"] == "::1"
    assert parse_postgres_url("postgresql://app@/x?host=/run/postgresql")["host"] == "/run/postgresql"
    assert parse_postgres_url("postgresql://app@h/x")["password"] is None
    assert redact_url("postgresql://app:secret@h:1/x") == "postgresql://app:***@h:1/x"
    with pytest.raises(StorageError, match="sslmode=require is not supported"):
        parse_postgres_url("postgresql://app:x@h/x?sslmode=require")


def test_app_on_postgres(postgres, release, serve):
    database = postgres.create_database()
    dsn = postgres.dsn(database)
    assert "%40" in dsn and "%3A" in dsn  # the password really needs percent-encoding
    app = release("1.1.0")

    server = serve(app, dsn)
    status, body = server.get("/health")
    assert (status, body["schema"]) == (503, 0)
    check = app.run("check-db", database_url=dsn)
    assert check.returncode == 1 and "schema version 0" in check.stderr

    migrate = app.run("migrate", database_url=dsn)
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout.splitlines() == ["applied migration 1: create table visits",
                                           "applied migration 2: add visits.user_agent", "schema version 2"]
    assert app.run("migrate", database_url=dsn).stdout.splitlines() == ["nothing to apply", "schema version 2"]
    assert app.run("check-db", database_url=dsn).returncode == 0

    assert server.get("/health") == (200, {"status": "healthy", "version": "1.1.0", "db": "ok", "schema": 2})
    assert server.post("/visits", {"path": "/pg"}, headers={"User-Agent": "ua'; --"}) == (201, {"id": 1})
    assert server.post("/visits") == (201, {"id": 2})
    assert server.get("/visits") == (200, {"count": 2})
    assert PG_PASSWORDS["pulse"] not in server.log()  # the DSN is logged without its password

    old = serve(release("1.0.0"), dsn)  # rollback: 1.0.0 code on schema 2
    assert old.get("/health")[1]["status"] == "healthy"
    assert old.post("/visits", {"path": "/old"}) == (201, {"id": 3})

    rows = postgres.psql("SELECT id || '|' || coalesce(path, '-') || '|' || coalesce(user_agent, '-') "
                         "FROM visits ORDER BY id", database)
    assert rows.splitlines()[0] == "1|/pg|ua'; --"
    assert rows.splitlines()[2] == "3|/old|-"
    assert postgres.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version",
                         database) == "1,2"


def test_concurrent_migrations_serialise(postgres, release):
    database = postgres.create_database()
    dsn = postgres.dsn(database)
    app = release("1.1.0")
    procs = [subprocess.Popen([str(app.bin), "migrate"], env=app.env(dsn), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [proc.communicate(timeout=30) + (proc.returncode,) for proc in procs]
    assert [rc for _, _, rc in results] == [0, 0, 0], results
    assert sum(out.count("applied migration") for out, _, _ in results) == 2
    assert postgres.psql("SELECT count(*) FROM schema_version", database) == "2"


def test_unreachable_and_bad_credentials(postgres, release, serve):
    app = release("1.0.0")
    down = f"postgresql://pulse:x@127.0.0.1:{free_port()}/pulse?connect_timeout=2"
    status, body = serve(app, down).get("/health")
    assert status == 503 and "cannot connect to PostgreSQL" in body["db"]
    assert app.run("check-db", database_url=down).returncode == 1

    wrong = postgres.dsn("postgres", password="wrong")
    check = app.run("check-db", database_url=wrong)
    assert check.returncode == 1
    assert 'password authentication failed for user "pulse"' in check.stderr
    assert "wrong" not in check.stderr
