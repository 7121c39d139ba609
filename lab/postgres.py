"""A throwaway PostgreSQL 15 cluster on 127.0.0.1 for tests (pulse's and the backup modules').

Runs the server tools as the postgres user when root (initdb refuses root), in a directory outside pytest's
0700 tmp (postgres must reach it), with durability off (tests only), and removes everything afterwards.
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ClusterError(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self, base, port, as_postgres, superuser_password):
        self.base, self.port, self.host, self.bin_dir = base, port, "127.0.0.1", str(PG_BIN)
        self.superuser_password = superuser_password
        self.as_postgres = as_postgres

    def psql(self, sql, database="postgres", timeout=60):
        """SQL as the superuser over the Unix socket (peer authentication): an oracle independent of the code."""
        proc = subprocess.run(self.as_postgres + [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                                  "-h", str(self.base), "-p", str(self.port), "-d", database,
                                                  "-c", sql],
                              cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"psql failed: {proc.stderr}")
        return proc.stdout.strip()

    def tcp_env(self):
        """libpq environment of the superuser over TCP."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": "postgres",
                "PGPASSWORD": self.superuser_password}


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


# Tests need no durability: a crash only loses a throwaway cluster.
TEST_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


@contextlib.contextmanager
def cluster(superuser_password, hba_host_lines=("host all all 127.0.0.1/32 scram-sha-256",), prefix="shipit-pg-",
            settings=TEST_SETTINGS, parent=None):
    """Yield a running Cluster: superuser postgres (peer on the socket, the password over TCP), TCP rules
    hba_host_lines, server settings (name=value), in a new directory under parent (default: the temp dir)."""
    if not (PG_BIN / "initdb").exists():
        raise ClusterError(f"PostgreSQL 15 server binaries are missing ({PG_BIN}/initdb): "
                           "install them with `apt-get install -y postgresql-15` (scripts/bootstrap does)")
    as_root = os.geteuid() == 0
    as_postgres = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    owner = pwd.getpwnam("postgres") if as_root else None

    def give(path):
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*argv):
        proc = subprocess.run(as_postgres + list(argv), cwd=base, capture_output=True, text=True, timeout=120,
                              check=False)
        if proc.returncode != 0:
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            raise ClusterError(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}{log}")

    data, port, started = base / "data", free_port(), False
    try:
        give(base)
        (base / "pwfile").write_text(superuser_password + "\n")
        give(base / "pwfile")
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
            f"--pwfile={base / 'pwfile'}", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        (data / "pg_hba.conf").write_text("local all postgres peer\n" + "".join(f"{line}\n" for line in hba_host_lines))
        give(data / "pg_hba.conf")
        options = " ".join(f"-c {setting}" for setting in
                           ("listen_addresses=127.0.0.1", f"port={port}", f"unix_socket_directories={base}", *settings))
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "30", "-o", options,
            "start")
        started = True
        yield Cluster(base, port, as_postgres, superuser_password)
    finally:
        if started:
            subprocess.run(as_postgres + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           cwd=base, capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
