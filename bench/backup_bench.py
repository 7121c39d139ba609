#!/usr/bin/env python3
"""Backup and restore time and size of shipit.deploy's db_backup beside the bare tools, from one run.

    sudo .venv/bin/python bench/backup_bench.py [--size-gb 1.0] [--work /var/tmp/shipit-bench] [--only sqlite|postgresql]

Generates a ~1 GB SQLite database (WAL, like pulse) and a ~1 GB PostgreSQL 15 database (a throwaway cluster
on 127.0.0.1, run as the postgres user), then times, one after the other on the same warm page cache:

SQLite      bare backup   sqlite3 DB ".backup COPY" && zstd -1 COPY && rm COPY
            shipit backup _backup.take_backup (backup API copy, integrity_check, zstd -1, sha256, fsyncs, manifest)
            bare restore  zstd -d FILE -o DB
            shipit restore stage (checksum, decompress, integrity_check, tables) + swap (rename, verify)
PostgreSQL  bare backup   pg_dump -Fc -Z0 | zstd -1 > FILE ;  pg_dump -Fc > FILE (its default gzip)
            shipit backup _backup.take_backup (pg_dump -Fc -Z0 | zstd -1, end-of-archive check, sha256,
                          pg_restore --list against the tables, fsyncs, manifest)
            bare restore  createdb && zstd -dc FILE | pg_restore -d DB ;  createdb && pg_restore -d DB FILE
            shipit restore stage (checksum, scratch database, pg_restore --single-transaction, tables) + swap

The module's own work is timed (module_utils called directly); `--with-ansible` also times the whole
`ansible -m shipit.deploy.db_backup` run. Everything generated is deleted at the end (unless --keep).
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "collections")]
from ansible_collections.shipit.deploy.plugins.module_utils import _backup  # noqa: E402
from lab.postgres import PG_BIN, cluster  # noqa: E402

ROW_SQL = ("'/page/' || (x % 997)", "'Mozilla/5.0 (X11; Linux x86_64) pulse-bench/' || (x % 13)",
           "hex(randomblob(48))")


def sh(cmd, **kwargs):
    return subprocess.run(cmd, shell=True, check=True, executable="/bin/bash", **kwargs)


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def size(path):
    return os.path.getsize(path)


def mib(n):
    return f"{n / 2**20:,.0f} MiB"


def make_sqlite(path, target_bytes):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, path TEXT, "
                "user_agent TEXT, payload TEXT)")
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO schema_version VALUES (1), (2)")
    batch, start = 500_000, 0
    while os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0) < target_bytes:
        con.execute(f"""INSERT INTO visits SELECT x, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || x || ' seconds'),
                        {', '.join(ROW_SQL)} FROM (WITH RECURSIVE c(x) AS (SELECT {start + 1} UNION ALL
                        SELECT x + 1 FROM c LIMIT {batch}) SELECT x FROM c)""")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        start += batch
    con.close()
    return start


def make_pg(cluster, target_bytes):
    cluster.psql("CREATE DATABASE bench")
    cluster.psql("CREATE TABLE visits (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, path text, "
                 "user_agent text, payload text); CREATE TABLE schema_version (version int PRIMARY KEY); "
                 "INSERT INTO schema_version VALUES (1), (2)", "bench")
    start, batch = 0, 1_000_000
    while int(cluster.psql("SELECT pg_database_size('bench')")) < target_bytes:
        cluster.psql(f"INSERT INTO visits SELECT x, now() - x * interval '1 second', '/page/' || (x % 997), "
                     f"'Mozilla/5.0 (X11; Linux x86_64) pulse-bench/' || (x % 13), "
                     f"md5(random()::text) || md5(random()::text) || md5(random()::text) "
                     f"FROM generate_series({start + 1}, {start + batch}) x", "bench", timeout=600)
        start += batch
    cluster.psql("VACUUM ANALYZE", "bench", timeout=600)
    return start


def bench_sqlite(work, target, results, with_ansible):
    db = work / "pulse.db"
    gen, rows = timed(lambda: make_sqlite(str(db), target))
    print(f"sqlite: generated {mib(size(db))} ({rows:,} rows) in {gen:.1f} s", flush=True)
    backups = work / "backups"
    _backup.ensure_private_dir(str(backups / "pulse"))

    copy, bare_file = work / "copy.db", work / "bare.sqlite3.zst"
    t_bare, _ = timed(lambda: sh(f"sqlite3 {db} '.backup {copy}' && zstd -1 -q {copy} -o {bare_file} && rm {copy}"))
    results.append(("sqlite", "backup", "bare: sqlite3 .backup + zstd -1", t_bare, size(bare_file)))

    t_ours, manifest = timed(lambda: _backup.take_backup(
        directory=str(backups / "pulse"), app="pulse", kind="sqlite", compression="zstd", level=1, threads=None,
        tools=_backup.Tools(), sqlite_path=str(db)))
    results.append(("sqlite", "backup", "shipit db_backup (verified)", t_ours, manifest["size"]))
    if with_ansible:
        cmd = (f"{REPO}/.venv/bin/ansible localhost -c local -i localhost, -e ansible_python_interpreter=/usr/bin/python3 "
               f"-m shipit.deploy.db_backup -a '{json.dumps({'app': 'pulse2', 'kind': 'sqlite', 'sqlite_path': str(db), 'backup_dir': str(backups)})}'")
        t_ans, _ = timed(lambda: sh(cmd, cwd=REPO, stdout=subprocess.DEVNULL))
        results.append(("sqlite", "backup", "shipit db_backup via ansible -m", t_ans, None))
        shutil.rmtree(backups / "pulse2", ignore_errors=True)

    restored = work / "restored.db"
    t_bare_r, _ = timed(lambda: sh(f"zstd -d -q {bare_file} -o {restored}"))
    results.append(("sqlite", "restore", "bare: zstd -d", t_bare_r, size(restored)))
    t_bare_rv, _ = timed(lambda: sh(f"zstd -d -q -f {bare_file} -o {restored} && "
                                    f"test \"$(sqlite3 {restored} 'PRAGMA integrity_check')\" = ok"))
    results.append(("sqlite", "restore", "bare: zstd -d + integrity_check", t_bare_rv, None))
    os.unlink(restored)

    def ours_restore():
        _backup.stage_sqlite(manifest, str(db), _backup.Tools())
        _backup.make_live_sqlite(manifest, str(db))
    t_ours_r, _ = timed(ours_restore)
    results.append(("sqlite", "restore", "shipit db_restore staged + live", t_ours_r, size(db)))


def bench_pg(work, target, results, with_ansible):
    # Durable like a real server (not lab.postgres' test settings), with memory for a 1 GB database.
    settings = ("shared_buffers=1GB", "maintenance_work_mem=512MB", "max_wal_size=4GB")
    with cluster("bench", prefix="pg-", settings=settings, parent=work) as pg_cluster:
        gen, rows = timed(lambda: make_pg(pg_cluster, target))
        db_size = int(pg_cluster.psql("SELECT pg_database_size('bench')"))
        print(f"postgresql: generated {mib(db_size)} ({rows:,} rows) in {gen:.1f} s", flush=True)
        env = dict(os.environ, **pg_cluster.tcp_env())
        pg = lambda tool: str(PG_BIN / tool)  # noqa: E731
        zst, plain = work / "bare.pgdump.zst", work / "bare.pgdump"
        t_zstd, _ = timed(lambda: sh(f"set -o pipefail; {pg('pg_dump')} -Fc -Z0 -d bench | zstd -1 -q > {zst}", env=env))
        results.append(("postgresql", "backup", "bare: pg_dump -Fc -Z0 | zstd -1", t_zstd, size(zst)))
        t_plain, _ = timed(lambda: sh(f"{pg('pg_dump')} -Fc -d bench -f {plain}", env=env))
        results.append(("postgresql", "backup", "bare: pg_dump -Fc (gzip)", t_plain, size(plain)))

        backups = work / "backups" / "shop"
        _backup.ensure_private_dir(str(backups))
        tools = _backup.Tools(pg_bin_dir=str(PG_BIN), env=pg_cluster.tcp_env())
        t_ours, manifest = timed(lambda: _backup.take_backup(
            directory=str(backups), app="shop", kind="postgresql", compression="zstd", level=1, threads=None,
            tools=tools, database="bench"))
        results.append(("postgresql", "backup", "shipit db_backup (verified)", t_ours, manifest["size"]))

        def bare_restore(name, source):
            pg_cluster.psql(f"CREATE DATABASE {name}")
            sh(f"set -o pipefail; {source} -d {name}", env=env)
        t_r1, _ = timed(lambda: bare_restore("r1", f"zstd -dc {zst} | {pg('pg_restore')}"))
        results.append(("postgresql", "restore", "bare: zstd -dc | pg_restore", t_r1, None))
        pg_cluster.psql("DROP DATABASE r1")
        t_r2, _ = timed(lambda: bare_restore("r2", f"{pg('pg_restore')} {plain}"))
        results.append(("postgresql", "restore", "bare: pg_restore (gzip dump)", t_r2, None))
        pg_cluster.psql("DROP DATABASE r2")

        def ours_restore():
            _backup.stage_pg(manifest, "bench", tools)
            _backup.make_live_pg(manifest, "bench", tools)
        t_ours_r, _ = timed(ours_restore)
        results.append(("postgresql", "restore", "shipit db_restore staged + live", t_ours_r, None))


def report(results):
    print()
    print(f"{'db':<11}{'op':<8}{'pipeline':<38}{'time':>8}{'size':>12}  ratios")
    for db in ("sqlite", "postgresql"):
        for op in ("backup", "restore"):
            rows = [r for r in results if r[0] == db and r[1] == op]
            if not rows:
                continue
            bare = [r for r in rows if r[2].startswith("bare")]
            fastest = min(bare, key=lambda r: r[3])
            plain = next((r for r in bare if "gzip" in r[2]), None)
            for r in rows:
                ratios = ""
                if not r[2].startswith("bare"):
                    ratios = f"{r[3] / fastest[3]:.2f}x fastest bare"
                    if plain:
                        ratios += f", {r[3] / plain[3]:.2f}x {plain[2][6:]}"
                print(f"{db:<11}{op:<8}{r[2]:<38}{r[3]:>7.2f}s{(mib(r[4]) if r[4] else '-'):>12}  {ratios}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--work", default="/var/tmp/shipit-bench")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--with-ansible", action="store_true", help="also time the module through `ansible -m`")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    work = Path(args.work)
    if work.exists():
        sys.exit(f"{work} exists: remove it or pass another --work")
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    target = int(args.size_gb * 2**30)
    results = []
    try:
        print(f"{os.cpu_count()} cores; sqlite {sqlite3.sqlite_version}; "
              f"{subprocess.run(['zstd', '--version'], capture_output=True, text=True).stdout.strip()}", flush=True)
        if args.only in (None, "sqlite"):
            bench_sqlite(work, target, results, args.with_ansible)
        if args.only in (None, "postgresql"):
            bench_pg(work, target, results, args.with_ansible)
        report(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
