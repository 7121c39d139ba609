"""Fixtures of the plugin tests: a throwaway PostgreSQL 15 cluster on 127.0.0.1 (removed afterwards)."""

import shutil
from urllib.parse import quote

import pytest

from backup_testlib import PG_APP_PASSWORD
from lab.postgres import ClusterError, cluster, sql_literal


class Postgres:
    def __init__(self, pg):
        self.pg, self.port, self.bin_dir, self.psql = pg, pg.port, pg.bin_dir, pg.psql
        self._n = 0

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
    for tool in ("zstd", "gzip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `apt-get install -y {tool}` (scripts/bootstrap does)", pytrace=False)
    try:
        with cluster("super-secret", prefix="shipit-backup-pg-") as pg:
            pg.psql(f"CREATE ROLE app LOGIN CREATEDB PASSWORD {sql_literal(PG_APP_PASSWORD)}")
            yield Postgres(pg)
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
