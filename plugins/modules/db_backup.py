#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_backup
short_description: Take a verified backup of an application's SQLite or PostgreSQL database
version_added: 0.2.0
description:
  - Takes one backup of the database of O(app) into C(<backup_dir>/<app>/) (mode 0700), verifies it, writes a
    sha256 manifest next to it, then prunes old backups by the retention policy.
  - >-
    B(SQLite) is copied online through SQLite's backup API in one step (one read transaction: consistent,
    including what the C(-wal) file holds, while the application keeps writing), never by copying the file;
    C(PRAGMA integrity_check) must say C(ok) on the copy, which runs while the copy is compressed.
  - >-
    B(PostgreSQL) is dumped with C(pg_dump -Fc -Z0) piped through the compressor (zstd level 1 by default:
    several times faster than pg_dump's own gzip); every exit status is checked, the archive must end with its
    end-of-data marker, and C(pg_restore --list) must read its table of contents and find the data of every
    table of the database. Passwords reach the tools through the environment, never their command line.
  - The backup file is created with O_EXCL and mode 0600 from its first byte, hashed as it is written,
    fsynced with its directory, and only then is the manifest (also 0600) written atomically. A backup
    without a manifest does not exist for M(shipit.deploy.db_backup_info) or the restore.
  - The manifest records the app, the release the backup was taken before (O(release_id)), the release
    that was live (O(live_release_id), whose data it holds), the kind of database, the size, the sha256,
    C(created_at), the tables and the versions of the tools.
  - 'Retention: keeps the newest O(keep_last), the newest backup of each of the O(keep_daily) most recent
    days and O(keep_weekly) most recent ISO weeks (by the manifests'' C(created_at), never file times), and
    every backup linked to a release in O(protected_releases).'
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
    details: Checks that the database can be read and predicts the backup id and what retention would prune.
  diff_mode:
    support: none
options:
  app:
    description: Name of the application; its backups live in C(<backup_dir>/<app>).
    type: str
    required: true
  backup_dir:
    description: Directory holding one directory of backups per application (created mode 0700).
    type: path
    default: /var/backups/shipit
  kind:
    description: Kind of database.
    type: str
    required: true
    choices: [sqlite, postgresql]
  sqlite_path:
    description: The SQLite database file (O(kind=sqlite)).
    type: path
  database:
    description: The PostgreSQL database (O(kind=postgresql)); may come from O(pg_dsn) instead.
    type: str
  pg_dsn:
    description:
      - A C(postgresql://user:password@host:port/database?sslmode=...) URI. Parsed into libpq environment
        variables; never logged or printed. Separate O(pg_host), O(pg_port), O(pg_user), O(pg_password) and
        O(database) override its parts.
    type: str
  pg_host:
    description: PostgreSQL host or Unix socket directory (C(/var/run/postgresql) for peer authentication).
    type: str
  pg_port:
    description: PostgreSQL port.
    type: int
  pg_user:
    description: PostgreSQL role to connect as.
    type: str
  pg_password:
    description: Its password (passed as C(PGPASSWORD) in the environment of the tools only).
    type: str
  pg_os_user:
    description: Run the PostgreSQL tools as this system user (C(runuser)), e.g. C(postgres) for peer authentication.
    type: str
  pg_bin_dir:
    description: Directory of C(pg_dump), C(pg_restore) and C(psql); default the ones on C(PATH).
    type: path
  exec_prefix:
    description:
      - Command prefix for the database tools, to run them inside a container, for example
        C([docker, compose, --project-directory, /srv/app, exec, -T, -e, PGPASSWORD, db]). The compressor and
        the hashing stay on the host. The connection settings reach the tools through C(env) on the command
        line, all but the password, which the prefix forwards (C(-e PGPASSWORD)) when one is needed.
    type: list
    elements: str
    default: []
  compression:
    description: Compressor of the backup file.
    type: str
    choices: [zstd, gzip]
    default: zstd
  compression_level:
    description: Compression level (1 is fastest).
    type: int
    default: 1
  compression_threads:
    description: zstd worker threads (C(-T)); 0 means one per core. Default zstd's own (one).
    type: int
  release_id:
    description: The release this backup is taken before (deploy.yml's new release); recorded in the manifest.
    type: str
  live_release_id:
    description: The release live while the backup is taken; its data is what the backup holds.
    type: str
  live_version:
    description: The version of O(live_release_id).
    type: str
  missing_ok:
    description:
      - >-
        Skip, rather than fail, when there is nothing to back up yet (the SQLite file does not exist, or the
        PostgreSQL database has no table): the first deploy of an application.
    type: bool
    default: false
  prune:
    description: Apply the retention policy after the backup.
    type: bool
    default: true
  keep_last:
    description: How many of the newest backups to keep.
    type: int
    default: 5
  keep_daily:
    description: Keep the newest backup of each of this many most recent days that have one.
    type: int
    default: 7
  keep_weekly:
    description: Keep the newest backup of each of this many most recent ISO weeks that have one.
    type: int
    default: 4
  protected_releases:
    description: Release ids (live, rollback target) whose backups are never pruned.
    type: list
    elements: str
    default: []
notes:
  - Needs C(zstd) or C(gzip) on the host, C(pg_dump), C(pg_restore) and C(psql) for PostgreSQL, and Python's
    C(sqlite3) module for SQLite.
seealso:
  - module: shipit.deploy.db_backup_info
  - module: shipit.deploy.db_restore
  - name: The shipit.deploy.db_backup role
    description: Backups before a deploy, and the backup and restore playbooks, built on these modules.
    link: https://github.com/shipit-deploy/shipit.deploy/blob/main/docs/backup_restore.md
"""

EXAMPLES = r"""
- name: Back up pulse's SQLite database before the release
  shipit.deploy.db_backup:
    app: pulse
    kind: sqlite
    sqlite_path: /srv/pulse/shared/data/pulse.db
    release_id: "20261125T180000Z"
    live_release_id: "20261120T090000Z"
  register: backup

- name: Back up a host PostgreSQL database as the postgres user (peer authentication)
  shipit.deploy.db_backup:
    app: shop
    kind: postgresql
    database: shop
    pg_host: /var/run/postgresql
    pg_os_user: postgres

- name: Back up over TCP with a DSN from the vault, gzip-compressed
  shipit.deploy.db_backup:
    app: shop
    kind: postgresql
    pg_dsn: "{{ vault_shop_dsn }}"
    compression: gzip
"""

RETURN = r"""
backup:
  description: The manifest of the new backup (as it would be, without checksum and size, in check mode); null when skipped.
  returned: success
  type: dict
  sample:
    backup_id: "20261125T180002Z"
    app: pulse
    release_id: "20261125T180000Z"
    live_release_id: "20261120T090000Z"
    db_kind: sqlite
    file: 20261125T180002Z.sqlite3.zst
    compression: zstd
    size: 2683
    sha256: bca1f7103ec68eb14d0c7b6b6a211901009757f4ffcd481a94628b7a0f12a066
    created_at: "2026-11-25T18:00:02Z"
    tables: [schema_version, visits]
    tool_versions: {sqlite: 3.40.1, zstd: 1.5.4}
backup_id:
  description: Id of the new backup (predicted in check mode), or null when skipped.
  returned: success
  type: str
skipped_reason:
  description: Why no backup was taken (O(missing_ok) and nothing to back up).
  returned: when nothing was backed up
  type: str
directory:
  description: The application's backup directory.
  returned: success
  type: str
pruned:
  description: Ids of the backups retention removed (would remove, in check mode).
  returned: success
  type: list
  elements: str
kept:
  description: Ids of the backups kept, with the reason (last, daily, weekly, protected).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import db_backup as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
