#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: db_restore
short_description: Restore a verified database backup, proving it before it goes live
version_added: 0.2.0
description:
  - Restores a backup made by M(shipit.deploy.db_backup) in two steps, so that the application is down only
    for a rename.
  - >-
    O(state=staged) first checks the backup file's size and sha256 against its manifest (a corrupted or
    truncated backup is refused before anything is created), then restores it into a scratch copy - a file
    beside the SQLite database, or a scratch PostgreSQL database with the target's owner, encoding and locale,
    restored by C(pg_restore --single-transaction) - while hashing every byte again, and verifies the copy:
    C(PRAGMA integrity_check) (SQLite), every table the manifest lists and O(expected_tables) present, and
    every O(verify_sql) query answering true. The live database is not touched.
  - >-
    O(state=live), with the application stopped, swaps the staged copy in for the live database (SQLite:
    renames, the old C(-wal) moved aside with its database; PostgreSQL: two C(ALTER DATABASE ... RENAME) in
    one transaction after ending other sessions), verifies the live database, then drops what it replaced
    unless O(keep_previous).
  - O(state=absent) drops a staged copy. A restore test is O(state=staged) then O(state=absent).
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
    details: O(state=staged) still verifies the backup's checksum (read-only); nothing is written.
  diff_mode:
    support: none
options:
  state:
    description: C(staged) restores into a scratch copy and verifies it, C(live) swaps it in, C(absent) drops it.
    type: str
    choices: [staged, live, absent]
    default: staged
  app:
    description: Name of the application whose backups are used.
    type: str
    required: true
  backup:
    description: Backup id or C(latest). Required unless O(state=absent).
    type: str
  backup_dir:
    description: Directory holding one directory of backups per application.
    type: path
    default: /var/backups/shipit
  kind:
    description: Kind of database; must match the backup's.
    type: str
    required: true
    choices: [sqlite, postgresql]
  sqlite_path:
    description: The SQLite database file to restore (O(kind=sqlite)). The restored file gets its owner and mode.
    type: path
  database:
    description: The PostgreSQL database to restore (O(kind=postgresql)); may come from O(pg_dsn).
    type: str
  maintenance_db:
    description: Database to connect to for creating, renaming and dropping databases.
    type: str
    default: postgres
  pg_dsn:
    description: A C(postgresql://) URI, parsed into libpq environment variables; never logged or printed.
    type: str
  pg_host:
    description: PostgreSQL host or Unix socket directory.
    type: str
  pg_port:
    description: PostgreSQL port.
    type: int
  pg_user:
    description: PostgreSQL role to connect as; it must be allowed to create databases (or be a superuser).
    type: str
  pg_password:
    description: Its password (passed as C(PGPASSWORD) in the environment of the tools only).
    type: str
  pg_os_user:
    description: Run the PostgreSQL tools as this system user (C(runuser)), e.g. C(postgres).
    type: str
  pg_bin_dir:
    description: Directory of C(pg_restore) and C(psql); default the ones on C(PATH).
    type: path
  exec_prefix:
    description: Command prefix for the database tools, to run them inside a container.
    type: list
    elements: str
    default: []
  expected_tables:
    description: Tables that must exist after the restore, besides the ones the manifest lists (PostgreSQL C(schema.table)).
    type: list
    elements: str
    default: []
  verify_sql:
    description: Queries whose first column of the first row must be true (or a non-zero number) after the restore.
    type: list
    elements: str
    default: []
  keep_previous:
    description:
      - Keep what O(state=live) replaced (C(<db>.shipit-replaced) or database C(<db>_shipit_replaced)) instead of
        dropping it.
    type: bool
    default: false
notes:
  - PostgreSQL database-level settings (C(ALTER DATABASE ... SET)) and database-level grants are not part of a
    C(pg_dump) archive and are not carried over by O(state=live).
seealso:
  - module: shipit.deploy.db_backup
  - module: shipit.deploy.db_backup_info
  - name: The shipit.deploy.db_backup role
    description: Backups before a deploy, and the backup and restore playbooks, built on these modules.
    link: https://github.com/shipit-deploy/shipit.deploy/blob/main/docs/backup_restore.md
"""

EXAMPLES = r"""
- name: Restore the newest backup of pulse into a scratch copy and verify it
  shipit.deploy.db_restore:
    app: pulse
    backup: latest
    kind: sqlite
    sqlite_path: /srv/pulse/shared/data/pulse.db
    verify_sql:
      - SELECT count(*) > 0 FROM schema_version

- name: Stop pulse
  ansible.builtin.systemd_service:
    name: pulse.service
    state: stopped

- name: Make the restored copy live
  shipit.deploy.db_restore:
    app: pulse
    backup: latest
    kind: sqlite
    sqlite_path: /srv/pulse/shared/data/pulse.db
    state: live

- name: Drop a staged copy (end of a restore test)
  shipit.deploy.db_restore:
    app: shop
    kind: postgresql
    database: shop
    pg_host: /var/run/postgresql
    pg_os_user: postgres
    state: absent
"""

RETURN = r"""
backup:
  description: The manifest of the backup restored.
  returned: when O(backup) is given
  type: dict
scratch:
  description: The scratch file or database the backup was staged into.
  returned: success
  type: str
checks:
  description: What was verified (C(integrity_check), C(tables), number of C(queries)).
  returned: when O(state) is C(staged) or C(live), outside check mode
  type: dict
replaced:
  description: Where the replaced database was kept (O(keep_previous)), else null.
  returned: when O(state=live)
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _backup


def main():
    argument_spec = dict(_backup.DB_ARGSPEC)
    argument_spec.update(
        state=dict(type="str", choices=["staged", "live", "absent"], default="staged"),
        backup=dict(type="str"),
        maintenance_db=dict(type="str", default="postgres"),
        expected_tables=dict(type="list", elements="str", default=[]),
        verify_sql=dict(type="list", elements="str", default=[]),
        keep_previous=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("kind", "sqlite", ["sqlite_path"]), ("state", "staged", ["backup"]),
                     ("state", "live", ["backup"])],
        supports_check_mode=True,
    )
    p = module.params
    os.umask(0o077)
    sqlite = p["kind"] == "sqlite"
    result = dict(changed=False)
    what = {"staged": "restoring backup {b} of {a} into a scratch copy",
            "live": "making the restored backup {b} of {a} live",
            "absent": "dropping the staged restore of {a}"}[p["state"]].format(b=p["backup"], a=p["app"])
    try:
        tools, target = _backup.tools_from_params(p)
        result["scratch"] = (_backup.sqlite_scratch(target) if sqlite else _backup.pg_scratch(target))[0]
        if p["state"] == "absent":
            if module.check_mode:
                staged = (os.path.lexists(result["scratch"]) if sqlite
                          else _backup.pg_database_exists(tools, result["scratch"], p["maintenance_db"]))
                result["changed"] = staged
            else:
                result["changed"] = (_backup.discard_sqlite(target) if sqlite
                                     else _backup.discard_pg(tools, target, p["maintenance_db"]))
            module.exit_json(**result)

        directory = _backup.app_dir(p["backup_dir"], p["app"])
        if p["backup"] != "latest":
            _backup.check_name("backup id", p["backup"])
        manifests, _invalid = _backup.list_manifests(directory)
        manifest = _backup.select(manifests, p["backup"])
        if manifest is None:
            raise _backup.BackupError(f"there is no backup {p['backup']} in {directory}")
        result["backup"] = _backup.public(manifest)
        checks = dict(expected_tables=p["expected_tables"], verify_sql=p["verify_sql"])
        if p["state"] == "staged":
            _backup.check_restorable(manifest, p["kind"])
            if module.check_mode:
                _backup.verify_file(manifest)
            elif sqlite:
                result.update(_backup.stage_sqlite(manifest, target, tools, **checks))
            else:
                result.update(_backup.stage_pg(manifest, target, tools, p["maintenance_db"], **checks))
            result["changed"] = True
        else:
            if module.check_mode:
                result["replaced"] = None
            elif sqlite:
                result.update(_backup.make_live_sqlite(manifest, target, keep_previous=p["keep_previous"], **checks))
            else:
                result.update(_backup.make_live_pg(manifest, target, tools, p["maintenance_db"],
                                                   keep_previous=p["keep_previous"], **checks))
            result["changed"] = True
    except (_backup.BackupError, OSError) as exc:
        nothing = "; the live database was not touched" if p["state"] == "staged" else ""
        module.fail_json(msg=f"{what}: {exc}{nothing}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
