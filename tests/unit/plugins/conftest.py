"""Fixtures of the plugin tests: a throwaway PostgreSQL 15 cluster on 127.0.0.1 (removed afterwards)."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from backup_testlib import PG_APP_PASSWORD, PG_BIN


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Postgres:
    def __init__(self, base, port, as_postgres):
        self.base, self.port, self.bin_dir = base, port, str(PG_BIN)
        self._as_postgres = as_postgres
        self._n = 0

    def psql(self, sql, database="postgres"):
        """SQL as the superuser over the Unix socket (peer authentication): an oracle independent of the code."""
        proc = subprocess.run(self._as_postgres + [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                                   "-h", str(self.base), "-p", str(self.port), "-d", database, "-c", sql],
                              cwd=self.base, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"psql failed: {proc.stderr}")
        return proc.stdout.strip()

    def create_database(self, owner="app"):
        self._n += 1
        name = f"shop_{self._n}"
        self.psql(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def dsn(self, database, password=PG_APP_PASSWORD):
        return f"postgresql://app:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres():
    """PostgreSQL 15 on 127.0.0.1:<free port>, SCRAM; role "app" (LOGIN CREATEDB, not a superuser)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 server binaries are missing ({PG_BIN}/initdb): "
                    "install them with `apt-get install -y postgresql-15` (scripts/bootstrap does)", pytrace=False)
    for tool in ("zstd", "gzip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `apt-get install -y {tool}` (scripts/bootstrap does)", pytrace=False)
    as_root = os.geteuid() == 0
    as_postgres = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="shipit-backup-pg-"))
    owner = pwd.getpwnam("postgres") if as_root else None

    def give(path):
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*argv):
        proc = subprocess.run(as_postgres + list(argv), cwd=base, capture_output=True, text=True, timeout=120,
                              check=False)
        if proc.returncode != 0:
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            pytest.fail(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}{log}", pytrace=False)

    data, port, started = base / "data", _free_port(), False
    try:
        give(base)
        (base / "pwfile").write_text("super-secret\n")
        give(base / "pwfile")
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
            f"--pwfile={base / 'pwfile'}", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        (data / "pg_hba.conf").write_text("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
        give(data / "pg_hba.conf")
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "30", "-o", options,
            "start")
        started = True
        pg = Postgres(base, port, as_postgres)
        pg.psql("CREATE ROLE app LOGIN CREATEDB PASSWORD '" + PG_APP_PASSWORD.replace("'", "''") + "'")
        yield pg
    finally:
        if started:
            subprocess.run(as_postgres + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           cwd=base, capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
