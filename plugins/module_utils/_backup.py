# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified database backups and restores that prove themselves (SQLite and PostgreSQL).

Private to shipit.deploy (used by the db_backup, db_backup_info and db_restore modules).

Layout: ``<backup_dir>/<app>/`` (mode 0700) holds, per backup, the compressed dump ``<id>.<kind>.<ext>``
and its manifest ``<id>.manifest.json`` (both 0600). A backup exists only once its manifest does: the dump
is written to ``.<id>.partial`` (created O_EXCL, mode 0600 from the first byte, under umask 077), fsynced,
renamed to its final name, the directory fsynced, and only then is the manifest written the same way.

Backups:

- SQLite: an online, consistent copy through SQLite's backup API (one step: one read transaction, so a
  writer in WAL mode never blocks and every committed row, the ones still in ``-wal`` included, is in the
  copy), then ``PRAGMA integrity_check`` on the copy *while* it is compressed, so the check costs no time.
- PostgreSQL: ``pg_dump -Fc -Z0`` piped through a fast compressor (zstd -1 by default). This process sits
  in the pipe to see the end of the archive (a complete custom archive ends with an end-of-data block),
  then the archive's table of contents is read back with ``pg_restore --list`` and must list the data of
  every table the database has.

The compressed bytes are hashed (sha256) as they are written, so the checksum costs no extra pass.

Restores happen in two steps so that downtime is only a rename: ``stage`` restores into a scratch copy
(SQLite: a file beside the database; PostgreSQL: a scratch database), checking the checksum of every byte
read and running the verification (integrity check, expected tables, the caller's queries) on it; then,
with the application stopped, ``make_live`` swaps it in (rename; PostgreSQL: two ``ALTER DATABASE ...
RENAME`` in one transaction), verifies the live database and drops what it replaced. ``discard`` drops a
staged scratch copy (the restore test: stage, verify, discard).

Streaming pipelines need concurrent pipes between processes, which AnsibleModule.run_command cannot do:
this file uses subprocess, always with argument vectors (never a shell) and the secrets in the
environment (never in argv).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import threading
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ansible_collections.shipit.deploy.plugins.module_utils import _files

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
CHUNK = 1 << 20
KINDS = ("sqlite", "postgresql")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# Orphans (a dump without manifest, a .partial) younger than this may belong to a backup still running.
ORPHAN_AGE = 3600

COMPRESSORS = {
    "zstd": {"ext": "zst", "compress": ["zstd", "-q", "-c", "--no-progress"], "decompress": ["zstd", "-d", "-q", "-c"],
             "version": ["zstd", "--version"]},
    "gzip": {"ext": "gz", "compress": ["gzip", "-c", "-n"], "decompress": ["gzip", "-d", "-c"],
             "version": ["gzip", "--version"]},
}
DUMP_EXT = {"sqlite": "sqlite3", "postgresql": "pgdump"}
# libpq connection keywords a DSN query string may carry, and their environment variables.
PG_QUERY_ENV = {
    "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME", "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
# A complete custom-format archive ends with the end-of-data chunk of its last data block: WriteInt(0).
PG_ARCHIVE_MAGIC = b"PGDMP"
PG_END_OF_DATA = b"\0\0\0\0\0"
PG_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|TABLE) (\S+) (\S+) ")


class BackupError(Exception):
    """What was attempted failed; the message says why (never with a password in it)."""


# -- small helpers ----------------------------------------------------------------------------------------

def check_name(kind, value):
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise BackupError(f"{kind} {value!r} is not a safe name: use letters, digits, '.', '_', '+' and '-'")
    return value


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def create_private(path):
    """Open a new file for writing, mode 0600 from its first byte: O_EXCL under umask 077, no symlink."""
    old = os.umask(0o077)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old)


def ensure_private_dir(path, check_mode=False):
    """Create ``path`` (and parents) mode 0700, or bring an existing one to 0700. Returns whether it changed."""
    if os.path.islink(path):
        raise BackupError(f"{path} is a symbolic link: refusing to keep backups behind one")
    if os.path.isdir(path):
        if os.stat(path).st_mode & 0o7777 == 0o700:
            return False
        if not check_mode:
            os.chmod(path, 0o700)
        return True
    if os.path.exists(path):
        raise BackupError(f"{path} exists and is not a directory")
    if not check_mode:
        old = os.umask(0o077)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        finally:
            os.umask(old)
        os.chmod(path, 0o700)
    return True


def redact(text, secrets):
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
            text = text.replace(quote(secret, safe=""), "********")
    return text


def _tail(path_or_file, limit=2000):
    try:
        path_or_file.seek(0)
        data = path_or_file.read()
    except AttributeError:
        with open(path_or_file, "rb") as handle:
            data = handle.read()
    text = data.decode("utf-8", "replace").strip()
    return text[-limit:]


def sha256_file(path):
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as handle:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


# -- where backups live, manifests ----------------------------------------------------------------------

def app_dir(backup_dir, app):
    return os.path.join(backup_dir, check_name("app", app))


def manifest_path(directory, backup_id):
    return os.path.join(directory, check_name("backup id", backup_id) + MANIFEST_SUFFIX)


def list_manifests(directory):
    """(manifests newest first, [(file, problem)] for manifests that cannot be read)."""
    manifests, invalid = [], []
    if not os.path.isdir(directory):
        return manifests, invalid
    for name in os.listdir(directory):
        if not name.endswith(MANIFEST_SUFFIX) or name.startswith("."):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict) or data.get("backup_id") + MANIFEST_SUFFIX != name:
                raise ValueError("not a shipit backup manifest")
            parse_iso(data["created_at"])
            data["path"] = os.path.join(directory, data["file"])
            data["manifest"] = path
            manifests.append(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            invalid.append((path, str(exc)))
    manifests.sort(key=lambda m: (m["created_at"], m["backup_id"]), reverse=True)
    return manifests, invalid


def select(manifests, backup):
    """The manifest of backup id ``backup``, or the newest for ``latest``; None when there is none."""
    if backup == "latest":
        return manifests[0] if manifests else None
    return next((m for m in manifests if m["backup_id"] == backup), None)


def taken_under(manifests, release_id):
    """The newest backup taken while ``release_id`` was live: the data that release ran with."""
    return next((m for m in manifests if m.get("live_release_id") == release_id), None)


def verify_file(manifest):
    """Refuse a missing, truncated or corrupted backup file: size first (cheap), then sha256."""
    path = manifest["path"]
    what = f"backup {manifest['backup_id']} of {manifest.get('app')}"
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise BackupError(f"{what} is unusable: its file {path} is missing") from None
    if size != manifest["size"]:
        raise BackupError(f"{what} is truncated or corrupted: {path} has {size} bytes, its manifest says "
                          f"{manifest['size']}")
    checksum = sha256_file(path)[0]
    if checksum != manifest["sha256"]:
        raise BackupError(f"{what} is corrupted: sha256 of {path} is {checksum}, its manifest says "
                          f"{manifest['sha256']}")
    return checksum


def public(manifest):
    """A manifest as modules return it."""
    return {k: v for k, v in manifest.items() if k != "manifest"} | {"manifest_path": manifest.get("manifest")}


# -- retention -------------------------------------------------------------------------------------------

def plan_retention(manifests, keep_last, keep_daily, keep_weekly, protected_ids=(), protected_releases=()):
    """Split manifests into (keep: {backup_id: reason}, prune: [manifest]).

    Keeps the newest ``keep_last``; the newest backup of each of the ``keep_daily`` most recent days that
    have one, and of each of the ``keep_weekly`` most recent ISO weeks that have one, by the manifests'
    created_at (never file times); every backup in ``protected_ids``; and for each release in
    ``protected_releases`` (the live one, the rollback target) the backup taken before it was deployed and
    the newest backup taken while it was live (what a rollback with data to it restores).
    """
    ordered = sorted(manifests, key=lambda m: (m["created_at"], m["backup_id"]), reverse=True)
    keep = {}
    for manifest in ordered[:max(keep_last, 0)]:
        keep.setdefault(manifest["backup_id"], "last")
    for tier, count, bucket in (
        ("daily", keep_daily, lambda d: d.date()),
        ("weekly", keep_weekly, lambda d: d.isocalendar()[:2]),
    ):
        seen = set()
        for manifest in ordered:
            key = bucket(parse_iso(manifest["created_at"]))
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(key)
            keep.setdefault(manifest["backup_id"], tier)
    for manifest in ordered:
        if manifest["backup_id"] in protected_ids:
            keep.setdefault(manifest["backup_id"], "protected")
    for release in filter(None, protected_releases):
        linked = [m for m in ordered if m.get("release_id") == release]
        newest_under = taken_under(ordered, release)
        for manifest in linked + ([newest_under] if newest_under else []):
            keep.setdefault(manifest["backup_id"], "protected")
    prune = [m for m in ordered if m["backup_id"] not in keep]
    return keep, prune


def orphans(directory, manifests, now=None):
    """Leftovers of interrupted backups older than ORPHAN_AGE: partial files and dumps without manifest."""
    now = now or time.time()
    known = {m["file"] for m in manifests} | {os.path.basename(m["manifest"]) for m in manifests if m.get("manifest")}
    found = []
    if not os.path.isdir(directory):
        return found
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name in known or not os.path.isfile(path) or name.endswith(MANIFEST_SUFFIX):
            continue
        if now - os.lstat(path).st_mtime > ORPHAN_AGE:
            found.append(path)
    return sorted(found)


def prune(plan, leftover):
    """Remove the pruned backups (manifest first: a backup stops existing before its file goes)."""
    removed = []
    for manifest in plan:
        for path in (manifest["manifest"], manifest["path"]):
            if os.path.lexists(path):
                os.unlink(path)
        removed.append(manifest["backup_id"])
    for path in leftover:
        os.unlink(path)
    return removed


# -- processes -------------------------------------------------------------------------------------------

class Tools:
    """How to run the database tools: argv prefix (runuser, docker compose exec), PostgreSQL bin dir, env."""

    def __init__(self, exec_prefix=(), os_user=None, pg_bin_dir=None, env=None, secrets=()):
        self.prefix = list(exec_prefix or [])
        # A prefix such as `docker compose exec` does not pass this process's environment on: the libpq
        # settings go through `env` on its command line, except the password (never on a command line: the
        # prefix forwards it itself, e.g. `docker compose exec -e PGPASSWORD`).
        if self.prefix:
            self.prefix += ["env"] + [f"{key}={value}" for key, value in sorted((env or {}).items())
                                      if key.startswith("PG") and key != "PGPASSWORD"]
        if os_user:
            self.prefix = ["runuser", "-u", os_user, "--"] + self.prefix
        self.pg_bin_dir = pg_bin_dir
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("LC_ALL", "C")
        self.secrets = [s for s in secrets if s]

    def pg(self, name):
        return [os.path.join(self.pg_bin_dir, name) if self.pg_bin_dir else name]

    def argv(self, argv, db_tool=True):
        return (self.prefix if db_tool else []) + list(argv)

    def popen(self, argv, db_tool=True, **kwargs):
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("cwd", "/")
        try:
            return subprocess.Popen(self.argv(argv, db_tool), **kwargs)
        except OSError as exc:
            raise BackupError(f"cannot run {argv[0]}: {exc}") from exc

    def run(self, argv, db_tool=True, input_text=None, timeout=None):
        try:
            proc = subprocess.run(self.argv(argv, db_tool), env=self.env, cwd="/", capture_output=True, text=True,
                                  input=input_text, timeout=timeout, check=False)
        except OSError as exc:
            raise BackupError(f"cannot run {argv[0]}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackupError(f"{argv[0]} did not finish within {timeout} s") from exc
        return proc

    def clean(self, text):
        return redact(text, self.secrets)


def tool_version(tools, argv, db_tool=False):
    proc = tools.run(argv, db_tool=db_tool, timeout=30)
    if proc.returncode != 0:
        raise BackupError(f"{' '.join(argv)} failed: {tools.clean(proc.stderr.strip() or proc.stdout.strip())}")
    first = (proc.stdout or proc.stderr).strip().splitlines()[0]
    match = re.search(r"v?(\d+(?:\.\d+)+)", first)
    return match.group(1) if match else first


def compressor(name, level=None, threads=None):
    try:
        spec = COMPRESSORS[name]
    except KeyError:
        raise BackupError(f"unknown compression {name!r}: use one of {', '.join(COMPRESSORS)}") from None
    argv = list(spec["compress"])
    if level is not None:
        argv.append(f"-{int(level)}")
    if name == "zstd" and threads is not None:
        argv.append(f"-T{int(threads)}")
    return spec, argv


def _pump(source, sink, digest=None, tail=None, counter=None):
    """Copy file-like ``source`` into fd/file ``sink`` in large chunks, hashing and keeping the tail."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    write = (lambda data: _write_all(sink, data)) if isinstance(sink, int) else sink.write
    while True:
        n = source.readinto(buf)
        if not n:
            break
        chunk = view[:n]
        if digest is not None:
            digest.update(chunk)
        if tail is not None:
            tail[:] = (bytes(tail) + bytes(chunk[-16:]))[-16:]
        write(chunk)
        total += n
    if counter is not None:
        counter.append(total)
    return total


def _write_all(fd, data):
    while data:
        written = os.write(fd, data)
        data = data[written:]


class _Thread(threading.Thread):
    """A thread that keeps its exception for the caller."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._target_fn, self._args, self.error, self.result = target, args, None, None

    def run(self):
        try:
            self.result = self._target_fn(*self._args)
        except BaseException as exc:  # handed to the caller by join_checked
            self.error = exc

    def join_checked(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.result


# -- SQLite ----------------------------------------------------------------------------------------------

def sqlite_connect(path, readonly=False, immutable=False):
    mode = "ro" if readonly else "rw"
    uri = f"file:{quote(path)}?mode={mode}" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 30000")
    return con


def sqlite_tables(con):
    return sorted(r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))


def sqlite_verify(path, expected_tables=(), verify_sql=(), integrity=True):
    """Integrity check, expected tables present, every verification query truthy. Returns what was checked."""
    con = sqlite_connect(path, readonly=True)
    try:
        checked = {}
        if integrity:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                raise BackupError(f"PRAGMA integrity_check on {path} says: {'; '.join(map(str, rows[:5]))}")
            checked["integrity_check"] = "ok"
        tables = sqlite_tables(con)
        missing = sorted(set(expected_tables) - set(tables))
        if missing:
            raise BackupError(f"{path} lacks the expected tables {', '.join(missing)} (it has: "
                              f"{', '.join(tables) or 'none'})")
        checked["tables"] = tables
        for sql in verify_sql:
            try:
                row = con.execute(sql).fetchone()
            except sqlite3.Error as exc:
                raise BackupError(f"verification query {sql!r} failed: {exc}") from exc
            if not row or not row[0]:
                raise BackupError(f"verification query {sql!r} returned {row[0] if row else 'no row'!r}")
        checked["queries"] = len(verify_sql)
        return checked
    finally:
        con.close()


def backup_sqlite(db_path, out_fd, compress_argv, tools, scratch_dir):
    """Online copy through the backup API, integrity-checked while it is compressed into ``out_fd``.

    Returns (sha256, size, raw_size, tables, checks).
    """
    copy = os.path.join(scratch_dir, f".copy.{os.getpid()}.{time.monotonic_ns()}.sqlite3")
    os.close(create_private(copy))
    try:
        try:
            src = sqlite_connect(db_path)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot open the SQLite database {db_path}: {exc}") from exc
        try:
            dst = sqlite3.connect(copy, isolation_level=None)
            try:
                # pages=-1: the whole database in one step, i.e. one read transaction: a consistent snapshot
                # that includes what the -wal file holds, while writers go on (WAL) or wait briefly.
                src.backup(dst, pages=-1)
                # The copy is a standalone file: no WAL (the app switches its own database back on open).
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise BackupError(f"SQLite backup of {db_path} failed: {exc}") from exc
        finally:
            src.close()
        raw_size = os.path.getsize(copy)
        check = _Thread(sqlite_verify, copy)
        check.start()
        digest = hashlib.sha256()
        counter = []
        with open(copy, "rb") as source, tempfile.TemporaryFile() as err:
            proc = tools.popen(compress_argv, db_tool=False, stdin=source, stdout=subprocess.PIPE, stderr=err,
                               bufsize=0)
            try:
                _pump(proc.stdout, out_fd, digest, counter=counter)
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc != 0:
                raise BackupError(f"{compress_argv[0]} failed (exit {rc}): {_tail(err)}")
        checks = check.join_checked()
        return digest.hexdigest(), counter[0], raw_size, checks["tables"], {"integrity_check": "ok"}
    finally:
        if os.path.lexists(copy):
            os.unlink(copy)
        for suffix in ("-journal", "-wal", "-shm"):
            if os.path.lexists(copy + suffix):
                os.unlink(copy + suffix)


# -- PostgreSQL ------------------------------------------------------------------------------------------

def pg_connection(dsn=None, host=None, port=None, user=None, password=None, database=None):
    """(environment for libpq, database name, secrets) from a DSN and/or separate options (options win)."""
    env = {}
    secrets = [password, dsn]
    if dsn:
        try:
            parts = urlsplit(dsn)
            if parts.scheme not in ("postgresql", "postgres"):
                raise ValueError("scheme is not postgresql://")
            if parts.username:
                env["PGUSER"] = unquote(parts.username)
            if parts.password:
                env["PGPASSWORD"] = unquote(parts.password)
                secrets.append(unquote(parts.password))
            if parts.hostname:
                env["PGHOST"] = unquote(parts.hostname)
            if parts.port:
                env["PGPORT"] = str(parts.port)
            if parts.path.strip("/"):
                env["PGDATABASE"] = unquote(parts.path.lstrip("/"))
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                if key not in PG_QUERY_ENV:
                    raise ValueError(f"unsupported connection parameter {key!r}")
                env[PG_QUERY_ENV[key]] = value
                if key == "password":
                    secrets.append(value)
        except ValueError as exc:
            # The message names the problem, never the DSN (it may hold a password).
            raise BackupError(f"the PostgreSQL DSN cannot be used: {exc}") from None
    for key, value in (("PGHOST", host), ("PGPORT", port), ("PGUSER", user), ("PGPASSWORD", password),
                       ("PGDATABASE", database)):
        if value not in (None, ""):
            env[key] = str(value)
    if not env.get("PGDATABASE"):
        raise BackupError("no PostgreSQL database named: set the database option or put it in the DSN")
    return env, env["PGDATABASE"], [s for s in secrets if s]


def ident(name):
    return '"' + name.replace('"', '""') + '"'


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def psql(tools, sql, database, check_error=True):
    argv = tools.pg("psql") + ["-X", "-q", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "--no-password",
                               "-d", database, "-c", sql]
    proc = tools.run(argv, timeout=600)
    if check_error and proc.returncode != 0:
        raise BackupError(f"psql on database {database} failed: {tools.clean(proc.stderr.strip())[-1500:]}")
    return proc


def psql_rows(tools, sql, database):
    out = psql(tools, sql, database).stdout
    return [line.split("\x1f") for line in out.splitlines() if line]


PG_TABLES_SQL = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', "
                 "'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' "
                 "ORDER BY 1, 2")


def pg_tables(tools, database):
    return [f"{schema}.{name}" for schema, name in psql_rows(tools, PG_TABLES_SQL, database)]


def pg_database_exists(tools, database, maintenance_db):
    rows = psql_rows(tools, f"SELECT 1 FROM pg_database WHERE datname = {literal(database)}", maintenance_db)
    return bool(rows)


def pg_toc(tools, path, decompress_argv):
    """The archive's table of contents (pg_restore --list of the decompressed file): (tables, data entries)."""
    with open(path, "rb") as source, tempfile.TemporaryFile() as err:
        unzip = tools.popen(decompress_argv, db_tool=False, stdin=source, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
        lister = tools.popen(tools.pg("pg_restore") + ["--list"], stdin=unzip.stdout, stdout=subprocess.PIPE,
                             stderr=err)
        unzip.stdout.close()
        out = lister.stdout.read().decode("utf-8", "replace")
        lister.stdout.close()
        rc = lister.wait()
        # pg_restore stops after the table of contents: the decompressor may end on a broken pipe.
        unzip.kill()
        unzip.wait()
        if rc != 0:
            raise BackupError(f"pg_restore --list cannot read the archive: {tools.clean(_tail(err))}")
    tables, data = set(), set()
    for line in out.splitlines():
        match = PG_TOC_LINE.match(line)
        if match:
            (data if match.group(1) == "TABLE DATA" else tables).add(f"{match.group(2)}.{match.group(3)}")
    return tables, data


def backup_postgres(tools, database, out_fd, compress_argv):
    """pg_dump -Fc -Z0 | compressor, every exit status checked, the archive's end seen.

    Returns (sha256, size, raw_size).
    """
    dump_argv = tools.pg("pg_dump") + ["-Fc", "-Z0", "--no-password", "-d", database]
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as zip_err:
        dump = tools.popen(dump_argv, stdout=subprocess.PIPE, stderr=dump_err, bufsize=0)
        try:
            zipper = tools.popen(compress_argv, db_tool=False, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=zip_err, bufsize=0)
        except BackupError:
            dump.kill()
            dump.wait()
            raise
        tail, counter = bytearray(), []

        def feed():
            try:
                _pump(dump.stdout, zipper.stdin, tail=tail, counter=counter)
            finally:
                zipper.stdin.close()

        feeder = _Thread(feed)
        feeder.start()
        digest = hashlib.sha256()
        written = []
        try:
            _pump(zipper.stdout, out_fd, digest, counter=written)
        finally:
            zipper.stdout.close()
            zip_rc = zipper.wait()
            feed_error = None
            try:
                feeder.join_checked()
            except OSError as exc:  # the compressor died: its own error says why
                feed_error = exc
            dump.stdout.close()
            dump_rc = dump.wait()
        if dump_rc != 0:
            raise BackupError(f"pg_dump of {database} failed (exit {dump_rc}): {tools.clean(_tail(dump_err))}")
        if zip_rc != 0 or feed_error:
            raise BackupError(f"{compress_argv[0]} failed (exit {zip_rc}): {_tail(zip_err) or feed_error}")
    raw_size = counter[0] if counter else 0
    if raw_size < len(PG_ARCHIVE_MAGIC) or bytes(tail[-5:]) != PG_END_OF_DATA:
        raise BackupError(f"pg_dump of {database} exited 0 but its archive is empty or incomplete "
                          f"({raw_size} bytes, no end-of-data marker)")
    return digest.hexdigest(), written[0], raw_size


def pg_verify(tools, database, expected_tables=(), verify_sql=()):
    tables = pg_tables(tools, database)
    missing = sorted(set(expected_tables) - set(tables))
    if missing:
        raise BackupError(f"database {database} lacks the expected tables {', '.join(missing)} "
                          f"(it has: {', '.join(tables) or 'none'})")
    for sql in verify_sql:
        proc = psql(tools, sql, database, check_error=False)
        first = proc.stdout.strip().splitlines()[0].split("\x1f")[0] if proc.stdout.strip() else ""
        if proc.returncode != 0:
            raise BackupError(f"verification query {sql!r} failed: {tools.clean(proc.stderr.strip())[-500:]}")
        if first.lower() in ("", "f", "false", "0"):
            raise BackupError(f"verification query {sql!r} returned {first or 'no row'!r}")
    return {"tables": tables, "queries": len(verify_sql)}


# -- taking a backup --------------------------------------------------------------------------------------

def new_backup_id(directory, now):
    """A time-ordered id no file in ``directory`` uses yet: 20261125T180000Z, then -1, -2, ..."""
    base = now.strftime("%Y%m%dT%H%M%SZ")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    for n in range(1000):
        backup_id = base if n == 0 else f"{base}-{n}"
        if not any(name.startswith((backup_id + ".", "." + backup_id + ".")) for name in names):
            return backup_id
    raise BackupError(f"no free backup id for {base} in {directory}")


def take_backup(*, directory, app, kind, compression, level, threads, tools, sqlite_path=None, database=None,
                release_id=None, live_release_id=None, live_version=None, missing_ok=False, now=None):
    """Take, verify and record one backup. Returns the manifest, or None when ``missing_ok`` skipped it."""
    started = time.monotonic()
    now = now or utcnow()
    spec, compress_argv = compressor(compression, level, threads)
    if kind == "sqlite":
        if not os.path.exists(sqlite_path):
            if missing_ok:
                return None
            raise BackupError(f"the SQLite database {sqlite_path} does not exist")
        versions = {"sqlite": sqlite3.sqlite_version}
    elif kind == "postgresql":
        if missing_ok and not pg_tables(tools, database):
            return None
        versions = {"pg_dump": tool_version(tools, tools.pg("pg_dump") + ["--version"], db_tool=True),
                    "server": psql(tools, "SHOW server_version", database).stdout.strip().split()[0]}
    else:
        raise BackupError(f"unknown database kind {kind!r}: use one of {', '.join(KINDS)}")
    versions[compression] = tool_version(tools, spec["version"])
    backup_id = new_backup_id(directory, now)
    final = os.path.join(directory, f"{backup_id}.{DUMP_EXT[kind]}.{spec['ext']}")
    partial = os.path.join(directory, f".{backup_id}.partial")
    fd = create_private(partial)
    try:
        try:
            if kind == "sqlite":
                checksum, size, raw_size, tables, checks = backup_sqlite(sqlite_path, fd, compress_argv, tools,
                                                                         directory)
            else:
                db_tables = pg_tables(tools, database)
                checksum, size, raw_size = backup_postgres(tools, database, fd, compress_argv)
                os.fsync(fd)
                toc_tables, data_entries = pg_toc(tools, partial, spec["decompress"])
                without_data = sorted(set(db_tables) - data_entries)
                if without_data:
                    raise BackupError(f"the dump of {database} is incomplete: no data for {', '.join(without_data)}")
                if not toc_tables:
                    raise BackupError(f"the dump of {database} holds no table: refusing an empty backup")
                tables = sorted(toc_tables)
                checks = {"pg_restore_list": "ok", "table_data_entries": len(data_entries)}
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(partial, final)
        _files.fsync_dir(directory)
    except BaseException:
        if os.path.lexists(partial):
            os.unlink(partial)
        raise
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "backup_id": backup_id,
        "app": app,
        "release_id": release_id or None,
        "live_release_id": live_release_id or None,
        "live_version": live_version or None,
        "db_kind": kind,
        "database": sqlite_path if kind == "sqlite" else database,
        "file": os.path.basename(final),
        "compression": compression,
        "size": size,
        "raw_size": raw_size,
        "sha256": checksum,
        "created_at": iso(now),
        "duration_s": round(time.monotonic() - started, 3),
        "tables": tables,
        "checks": checks,
        "tool_versions": versions,
    }
    path = manifest_path(directory, backup_id)
    _files.write_json_atomic(path, manifest, 0o600)
    manifest["path"], manifest["manifest"] = final, path
    return manifest


# -- restoring --------------------------------------------------------------------------------------------

def sqlite_scratch(target):
    directory, name = os.path.split(os.path.abspath(target))
    return os.path.join(directory, f".{name}.shipit-restore"), os.path.join(directory, f"{name}.shipit-replaced")


def pg_scratch(database):
    return database[:48] + "_shipit_restore", database[:48] + "_shipit_replaced"


def _decompress_into(manifest, tools, sink_argv=None, sink_fd=None, sink_stdout=None):
    """Stream the backup file through sha256 and the decompressor into a file (sink_fd) or a process.

    Returns the sha256 of what was read; raises BackupError with the decompressor's or sink's complaint.
    """
    spec = COMPRESSORS[manifest["compression"]]
    digest = hashlib.sha256()
    with open(manifest["path"], "rb", buffering=0) as source, tempfile.TemporaryFile() as unzip_err, \
            tempfile.TemporaryFile() as sink_err:
        unzip = tools.popen(spec["decompress"], db_tool=False, stdin=subprocess.PIPE,
                            stdout=sink_fd if sink_fd is not None else subprocess.PIPE, stderr=unzip_err, bufsize=0)
        sink = None
        if sink_argv:
            sink = tools.popen(sink_argv, stdin=unzip.stdout, stdout=sink_stdout or subprocess.DEVNULL,
                               stderr=sink_err)
            unzip.stdout.close()
        feed_error = None
        try:
            _pump(source, unzip.stdin, digest)
        except OSError as exc:  # the decompressor stopped reading: its own error says why
            feed_error = exc
        finally:
            try:
                unzip.stdin.close()
            except OSError:
                pass
        unzip_rc = unzip.wait()
        sink_rc = sink.wait() if sink else 0
        checksum = digest.hexdigest()
        # Drain what is left of the file so the checksum covers all of it, even after a decompressor error.
        if feed_error is not None or unzip_rc != 0:
            checksum = sha256_file(manifest["path"])[0]
        if checksum != manifest["sha256"]:
            raise BackupError(f"backup {manifest['backup_id']} of {manifest['app']} is corrupted: sha256 of "
                              f"{manifest['path']} is {checksum}, its manifest says {manifest['sha256']}")
        if unzip_rc != 0 or feed_error:
            raise BackupError(f"decompressing backup {manifest['backup_id']} failed (exit {unzip_rc}): "
                              f"{_tail(unzip_err) or feed_error}")
        if sink_rc != 0:
            raise BackupError(f"{os.path.basename(sink_argv[0])} of backup {manifest['backup_id']} failed "
                              f"(exit {sink_rc}): {tools.clean(_tail(sink_err))}")
    return checksum


def check_restorable(manifest, kind):
    if manifest.get("db_kind") != kind:
        raise BackupError(f"backup {manifest['backup_id']} is a {manifest.get('db_kind')} backup, not {kind}")
    if manifest.get("compression") not in COMPRESSORS:
        raise BackupError(f"backup {manifest['backup_id']} uses unknown compression {manifest.get('compression')!r}")
    try:
        size = os.stat(manifest["path"]).st_size
    except FileNotFoundError:
        raise BackupError(f"backup {manifest['backup_id']} of {manifest['app']} is unusable: its file "
                          f"{manifest['path']} is missing") from None
    if size != manifest["size"]:
        raise BackupError(f"backup {manifest['backup_id']} of {manifest['app']} is truncated or corrupted: "
                          f"{manifest['path']} has {size} bytes, its manifest says {manifest['size']}")


def stage_sqlite(manifest, target, tools, expected_tables=(), verify_sql=(), owner=None, group=None, mode=None):
    """Restore into a scratch file beside ``target``, checked, owned and moded like the target."""
    check_restorable(manifest, "sqlite")
    verify_file(manifest)
    scratch = sqlite_scratch(target)[0]
    directory = os.path.dirname(scratch)
    if not os.path.isdir(directory):
        raise BackupError(f"the directory of the SQLite database, {directory}, does not exist")
    discard_sqlite(target)
    fd = create_private(scratch)
    try:
        try:
            checksum = _decompress_into(manifest, tools, sink_fd=fd)
            # The copy reaches the disk while it is checked: fsync and integrity_check run side by side.
            syncer = _Thread(os.fsync, fd)
            syncer.start()
            try:
                checks = sqlite_verify(scratch, list(manifest.get("tables") or []) + list(expected_tables),
                                       verify_sql)
            finally:
                syncer.join_checked()
        finally:
            os.close(fd)
        if os.path.exists(target):
            st = os.stat(target)
            uid, gid, perm = st.st_uid, st.st_gid, st.st_mode & 0o7777
        else:
            uid, gid, perm = -1, -1, 0o600
        if owner is not None or group is not None:
            uid = owner if owner is not None else uid
            gid = group if group is not None else gid
        os.chown(scratch, uid, gid)
        os.chmod(scratch, mode if mode is not None else perm)
        _files.write_json_atomic(scratch + ".json", {"backup_id": manifest["backup_id"], "sha256": checksum,
                                                     "target": target}, 0o600)
    except BaseException:
        discard_sqlite(target)
        raise
    return {"scratch": scratch, "checks": checks}


def discard_sqlite(target):
    scratch = sqlite_scratch(target)[0]
    removed = False
    for path in (scratch, scratch + ".json", scratch + "-journal", scratch + "-wal", scratch + "-shm"):
        if os.path.lexists(path):
            os.unlink(path)
            removed = True
    return removed


def staged_marker_sqlite(target):
    scratch = sqlite_scratch(target)[0]
    try:
        with open(scratch + ".json", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def make_live_sqlite(manifest, target, expected_tables=(), verify_sql=(), keep_previous=False):
    """Swap the staged scratch file in for ``target`` (the app is stopped). Returns what it did."""
    scratch, replaced = sqlite_scratch(target)
    marker = staged_marker_sqlite(target)
    if not marker or marker.get("backup_id") != manifest["backup_id"] or not os.path.exists(scratch):
        raise BackupError(f"backup {manifest['backup_id']} is not staged for {target}: stage it first")
    directory = os.path.dirname(scratch)
    moved = []
    for suffix in ("", "-wal", "-journal", "-shm"):
        if os.path.lexists(replaced + suffix):
            os.unlink(replaced + suffix)
    if os.path.exists(target):
        for suffix in ("", "-wal", "-journal"):
            if os.path.lexists(target + suffix):
                os.rename(target + suffix, replaced + suffix)
                moved.append(replaced + suffix)
        if os.path.lexists(target + "-shm"):
            os.unlink(target + "-shm")
    os.rename(scratch, target)
    os.unlink(scratch + ".json")
    _files.fsync_dir(directory)
    checks = sqlite_verify(target, list(manifest.get("tables") or []) + list(expected_tables), verify_sql,
                           integrity=False)
    if not keep_previous:
        for path in moved:
            os.unlink(path)
        _files.fsync_dir(directory)
    return {"replaced": replaced if moved and keep_previous else None, "checks": checks}


def _pg_props(tools, database, maintenance_db):
    rows = psql_rows(tools, "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
                            f"FROM pg_database WHERE datname = {literal(database)}", maintenance_db)
    return rows[0] if rows else None


def discard_pg(tools, target, maintenance_db):
    scratch = pg_scratch(target)[0]
    existed = pg_database_exists(tools, scratch, maintenance_db)
    if existed:
        psql(tools, f"DROP DATABASE IF EXISTS {ident(scratch)} WITH (FORCE)", maintenance_db)
    return existed


def stage_pg(manifest, target, tools, maintenance_db="postgres", expected_tables=(), verify_sql=()):
    """Restore into a scratch database (owner, encoding and locale of the target), in one transaction."""
    check_restorable(manifest, "postgresql")
    verify_file(manifest)
    scratch = pg_scratch(target)[0]
    discard_pg(tools, target, maintenance_db)
    props = _pg_props(tools, target, maintenance_db)
    create = f"CREATE DATABASE {ident(scratch)} TEMPLATE template0"
    if props:
        owner, encoding, collate, ctype = props
        create += (f" OWNER {ident(owner)} ENCODING {literal(encoding)} LC_COLLATE {literal(collate)}"
                   f" LC_CTYPE {literal(ctype)}")
    psql(tools, create, maintenance_db)
    try:
        restore_argv = tools.pg("pg_restore") + ["--no-password", "--single-transaction", "--exit-on-error",
                                                 "-d", scratch]
        checksum = _decompress_into(manifest, tools, sink_argv=restore_argv)
        checks = pg_verify(tools, scratch, list(manifest.get("tables") or []) + list(expected_tables), verify_sql)
        psql(tools, f"COMMENT ON DATABASE {ident(scratch)} IS "
                    f"{literal('shipit staged ' + manifest['backup_id'] + ' sha256:' + checksum)}", maintenance_db)
    except BaseException:
        discard_pg(tools, target, maintenance_db)
        raise
    return {"scratch": scratch, "checks": checks}


def staged_marker_pg(tools, target, maintenance_db):
    scratch = pg_scratch(target)[0]
    rows = psql_rows(tools, "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            f"WHERE datname = {literal(scratch)}", maintenance_db)
    if not rows or not rows[0][0].startswith("shipit staged "):
        return None
    return {"backup_id": rows[0][0].split()[2]}


def make_live_pg(manifest, target, tools, maintenance_db="postgres", expected_tables=(), verify_sql=(),
                 keep_previous=False):
    """Swap the staged scratch database in for ``target``: two renames in one transaction."""
    scratch, replaced = pg_scratch(target)
    marker = staged_marker_pg(tools, target, maintenance_db)
    if not marker or marker["backup_id"] != manifest["backup_id"]:
        raise BackupError(f"backup {manifest['backup_id']} is not staged for database {target}: stage it first")
    psql(tools, f"DROP DATABASE IF EXISTS {ident(replaced)} WITH (FORCE)", maintenance_db)
    exists = pg_database_exists(tools, target, maintenance_db)
    swap = ""
    if exists:
        swap += f"ALTER DATABASE {ident(target)} RENAME TO {ident(replaced)}; "
    swap += f"ALTER DATABASE {ident(scratch)} RENAME TO {ident(target)}; "
    note = f"shipit: restored from backup {manifest['backup_id']} at {iso(utcnow())}"
    swap += f"COMMENT ON DATABASE {ident(target)} IS {literal(note)};"
    terminate = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 f"WHERE datname IN ({literal(target)}, {literal(scratch)}) AND pid <> pg_backend_pid()")
    last = None
    for dummy in range(10):
        psql(tools, terminate, maintenance_db)
        proc = psql(tools, "BEGIN; " + swap + " COMMIT;", maintenance_db, check_error=False)
        if proc.returncode == 0:
            break
        last = tools.clean(proc.stderr.strip())
        if "being accessed by other users" not in last:
            raise BackupError(f"swapping the restored database in for {target} failed: {last}")
        time.sleep(0.5)
    else:
        raise BackupError(f"swapping the restored database in for {target} failed: {last}")
    checks = pg_verify(tools, target, list(manifest.get("tables") or []) + list(expected_tables), verify_sql)
    if exists and not keep_previous:
        psql(tools, f"DROP DATABASE IF EXISTS {ident(replaced)} WITH (FORCE)", maintenance_db)
    return {"replaced": replaced if exists and keep_previous else None, "checks": checks}


# -- what the modules share ------------------------------------------------------------------------------

# Connection options of db_backup and db_restore (documented in each module).
DB_ARGSPEC = dict(
    app=dict(type="str", required=True),
    backup_dir=dict(type="path", default="/var/backups/shipit"),
    kind=dict(type="str", required=True, choices=list(KINDS)),
    sqlite_path=dict(type="path"),
    database=dict(type="str"),
    pg_dsn=dict(type="str", no_log=True),
    pg_host=dict(type="str"),
    pg_port=dict(type="int"),
    pg_user=dict(type="str"),
    pg_password=dict(type="str", no_log=True),
    pg_os_user=dict(type="str"),
    pg_bin_dir=dict(type="path"),
    exec_prefix=dict(type="list", elements="str", default=[]),
)


def tools_from_params(params):
    """(Tools, database name or SQLite path) for the module's parameters."""
    if params["kind"] == "sqlite":
        if not params.get("sqlite_path"):
            raise BackupError("kind=sqlite needs sqlite_path")
        return Tools(exec_prefix=params["exec_prefix"]), params["sqlite_path"]
    env, database, secrets = pg_connection(params.get("pg_dsn"), params.get("pg_host"), params.get("pg_port"),
                                           params.get("pg_user"), params.get("pg_password"), params.get("database"))
    tools = Tools(exec_prefix=params["exec_prefix"], os_user=params.get("pg_os_user"),
                  pg_bin_dir=params.get("pg_bin_dir"), env=env, secrets=secrets)
    return tools, database
