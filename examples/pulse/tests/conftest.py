"""Fixtures for pulse's tests: built and unpacked releases, a running server, a throwaway PostgreSQL 15."""

import os
import signal
import socket
import subprocess
import time
from urllib.parse import quote

import pytest

from lab.postgres import ClusterError, cluster, sql_literal
from pulse_testlib import PG_PASSWORDS, free_port, http, pulse_build


class Release:
    """An unpacked release directory R; runs R/bin/pulse like a deploy does."""

    def __init__(self, root, version, broken):
        self.root, self.version, self.broken = root, version, broken
        self.bin = root / "bin" / "pulse"

    def env(self, database_url=None, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        if database_url:
            env["PULSE_DATABASE_URL"] = database_url
        env.update(extra)
        return env

    def run(self, *args, database_url=None, env=None, timeout=30):
        return subprocess.run([str(self.bin), *args], env=env or self.env(database_url), capture_output=True,
                              text=True, timeout=timeout, check=False)


class Server:
    def __init__(self, release, database_url, log_path, env=None, args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = env or release.env(database_url)
        env.update(PULSE_LISTEN_HOST="127.0.0.1", PULSE_PORT=str(self.port))
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([str(release.bin), *args, "serve"], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"pulse exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pulse did not listen within 10 s:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def get(self, path, **kwargs):
        return http("GET", self.url + path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return http("POST", self.url + path, body, **kwargs)

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Send sig; returns (exit code, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """release(version, broken=False) -> Release, built with build.py and unpacked (cached per session)."""
    cache = {}
    base = tmp_path_factory.mktemp("releases")

    def make(version, broken=False):
        if (version, broken) not in cache:
            out = base / f"{version}{'-broken' if broken else ''}"
            tarball = pulse_build.build_tarball(version, broken, out / "dist")
            root = out / "release"
            root.mkdir()
            # Unpacked with tar(1), as deploys do.
            subprocess.run(["tar", "-xzf", str(tarball), "-C", str(root)], check=True)
            cache[version, broken] = Release(root, version, broken)
        return cache[version, broken]

    return make


@pytest.fixture
def serve(tmp_path):
    """serve(release, database_url, env=None, args=()) -> a running Server, killed at teardown."""
    servers = []

    def start(release, database_url, env=None, args=()):
        server = Server(release, database_url, tmp_path / f"server-{len(servers)}.log", env, args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/pulse.db"


# -- PostgreSQL ---------------------------------------------------------------------------------------

class Postgres:
    def __init__(self, pg):
        self.pg, self.port, self.host, self.psql = pg, pg.port, pg.host, pg.psql
        self._databases = 0

    def create_database(self, owner="pulse"):
        self._databases += 1
        name = f"pulse_{self._databases}"
        self.psql(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def dsn(self, database, user="pulse", password=None):
        password = PG_PASSWORDS[user] if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{database}"

    def connect_args(self, database="postgres", user="pulse", password=None):
        return {"host": self.host, "port": self.port, "user": user, "database": database,
                "password": PG_PASSWORDS[user] if password is None else password, "timeout": 5}


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<free port>, SCRAM by default; removed afterwards."""
    # Each test role gets the method named after it; everyone else SCRAM (PostgreSQL 15's default).
    hba = ("host all pulse_md5 127.0.0.1/32 md5", "host all pulse_plain 127.0.0.1/32 password",
           "host all all 127.0.0.1/32 scram-sha-256")
    try:
        with cluster(PG_PASSWORDS["postgres"], hba, prefix="pulse-pg-") as pg:
            pg.psql(f"CREATE ROLE pulse LOGIN PASSWORD {sql_literal(PG_PASSWORDS['pulse'])}")
            pg.psql(f"SET password_encryption = 'md5'; "
                    f"CREATE ROLE pulse_md5 LOGIN PASSWORD {sql_literal(PG_PASSWORDS['pulse_md5'])}")
            pg.psql(f"CREATE ROLE pulse_plain LOGIN PASSWORD {sql_literal(PG_PASSWORDS['pulse_plain'])}")
            yield Postgres(pg)
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
