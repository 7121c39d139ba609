"""Storage behind one small interface: SQLite (sqlite:////abs/path.db) or PostgreSQL (postgresql://...).

Every operation opens its own short connection: the app is tiny, and a database restart then never
leaves it holding a dead connection.
"""

import os
import sqlite3
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import pgwire

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT = 5.0
PG_MIGRATION_LOCK = 741053  # any constant: serialises concurrent `pulse migrate` runs


class StorageError(Exception):
    """A database problem, with a message fit for /health and the CLI."""


class _SqliteConn:
    dialect = "sqlite"

    def __init__(self, path, create):
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StorageError(f"SQLite database directory {directory} does not exist")
        if not create and not os.path.exists(path):
            raise StorageError(f"SQLite database {path} does not exist (run `pulse migrate`)")
        # mode=rw: a health check must not create an empty database file as a side effect.
        uri = f"file:{quote(path)}?mode={'rwc' if create else 'rw'}"
        self.db = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self.db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL is persistent in the file; only switch when needed (switching takes a lock).
        if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")

    def execute(self, sql, params=()):
        return self.db.execute(sql, params).fetchall()

    def begin_exclusive(self):
        self.db.execute("BEGIN IMMEDIATE")  # takes the write lock now, not at the first write

    def table_exists(self, name):
        return bool(self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def close(self):
        self.db.close()


class _PgConn:
    dialect = "postgresql"

    def __init__(self, params):
        self.conn = pgwire.connect(**params)

    def execute(self, sql, params=()):
        if not params:
            return self.conn.query(sql)
        pieces = sql.split("?")  # our SQL has no literal "?": turn qmark placeholders into $1, $2, ...
        sql = pieces[0] + "".join(f"${i}{piece}" for i, piece in enumerate(pieces[1:], 1))
        return self.conn.query(sql, list(params))

    def begin_exclusive(self):
        self.conn.query("BEGIN")
        self.conn.query(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")

    def table_exists(self, name):
        return self.conn.query("SELECT to_regclass($1) IS NOT NULL", [name])[0][0]

    def close(self):
        self.conn.close()


SCHEMA_VERSION_DDL = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
              " description TEXT NOT NULL,"
              " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                  " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
}


def parse_postgres_url(url):
    """postgresql://user:password@host:port/dbname?connect_timeout=5 -> pgwire.connect() keywords.

    User and password must be percent-encoded when they contain URL delimiters (@ : / # ? %).
    """
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    if hostport.startswith("["):  # [ipv6]:port
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if query.get("sslmode", "disable") not in ("disable", "allow", "prefer"):
        raise StorageError(f"sslmode={query['sslmode']} is not supported (pulse speaks PostgreSQL without TLS)")
    try:
        port = int(query.get("port") or port or 5432)
        timeout = float(query.get("connect_timeout") or PG_CONNECT_TIMEOUT)
    except ValueError as exc:
        raise StorageError(f"bad PostgreSQL URL: {exc}") from None
    user = unquote(query.get("user") or user) or "postgres"
    return {
        "host": unquote(query.get("host") or host) or "127.0.0.1",
        "port": port,
        "user": user,
        "password": unquote(query.get("password") or password) if (has_password or "password" in query) else None,
        "database": unquote(parts.path.lstrip("/")) or user,
        "timeout": timeout,
    }


def redact_url(url):
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}").geturl()


class Database:
    def __init__(self, url):
        self.url = url
        if url.startswith("sqlite://"):
            # sqlite:////abs/path.db (absolute) or sqlite:///rel/path.db (relative), as SQLAlchemy spells it.
            self.path = unquote(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else ""
            if not self.path:
                raise StorageError(f"bad SQLite URL {url!r}: expected sqlite:////absolute/path/pulse.db")
            self._opener = lambda create: _SqliteConn(self.path, create)
        elif url.startswith(("postgresql://", "postgres://")):
            params = parse_postgres_url(url)
            self._opener = lambda create: _PgConn(params)
        else:
            raise StorageError(f"unsupported database URL {redact_url(url)!r}: use sqlite:// or postgresql://")

    def _connect(self, create=False):
        try:
            return self._opener(create)
        except (sqlite3.Error, pgwire.Error) as exc:
            raise StorageError(str(exc)) from exc

    def _run(self, action, create=False):
        conn = self._connect(create)
        try:
            return action(conn)
        except (sqlite3.Error, pgwire.Error) as exc:
            raise StorageError(str(exc)) from exc
        finally:
            conn.close()

    def schema_version(self):
        """Highest applied migration; 0 for a database that was never migrated."""
        def action(conn):
            if not conn.table_exists("schema_version"):
                return 0
            return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0]
        return self._run(action)

    def migrate(self, migrations):
        """Apply the missing ones in one transaction; returns those applied (empty when up to date)."""
        def action(conn):
            conn.begin_exclusive()
            try:
                conn.execute(SCHEMA_VERSION_DDL[conn.dialect])
                done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
                applied = []
                for migration in migrations:
                    if migration.number not in done:
                        conn.execute(migration.sql[conn.dialect])
                        conn.execute("INSERT INTO schema_version (version, description) VALUES (?, ?)",
                                     (migration.number, migration.description))
                        applied.append(migration)
                conn.execute("COMMIT")
                return applied
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except (sqlite3.Error, pgwire.Error):
                    pass  # the original error is the one worth reporting
                raise
        return self._run(action, create=True)

    def add_visit(self, path, user_agent=None, with_user_agent=False):
        if with_user_agent:
            sql, params = "INSERT INTO visits (path, user_agent) VALUES (?, ?) RETURNING id", (path, user_agent)
        else:
            sql, params = "INSERT INTO visits (path) VALUES (?) RETURNING id", (path,)
        return self._run(lambda conn: conn.execute(sql, params)[0][0])

    def count_visits(self):
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM visits")[0][0])
