# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.db_backup: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import os

from ansible_collections.shipit.deploy.plugins.module_utils import _backup

SPEC = dict(
    argument_spec=dict(
        _backup.DB_ARGSPEC,
        compression=dict(type="str", choices=list(_backup.COMPRESSORS), default="zstd"),
        compression_level=dict(type="int", default=1),
        compression_threads=dict(type="int"),
        release_id=dict(type="str"),
        live_release_id=dict(type="str"),
        live_version=dict(type="str"),
        missing_ok=dict(type="bool", default=False),
        prune=dict(type="bool", default=True),
        keep_last=dict(type="int", default=5),
        keep_daily=dict(type="int", default=7),
        keep_weekly=dict(type="int", default=4),
        protected_releases=dict(type="list", elements="str", default=[]),
    ),
    required_if=[("kind", "sqlite", ["sqlite_path"])],
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    p = module.params
    os.umask(0o077)
    what = f"backing up the {p['kind']} database of {p['app']}"
    result = dict(changed=False, backup=None, backup_id=None, pruned=[], kept={})
    try:
        tools, database = _backup.tools_from_params(p)
        directory = _backup.app_dir(p["backup_dir"], p["app"])
        result["directory"] = directory
        for name in ("release_id", "live_release_id"):
            if p[name]:
                _backup.check_name(name.replace("_", " "), p[name])
        result["changed"] = _backup.ensure_private_dir(directory, module.check_mode)
        common = dict(app=p["app"], kind=p["kind"], compression=p["compression"], level=p["compression_level"],
                      threads=p["compression_threads"], tools=tools, release_id=p["release_id"],
                      live_release_id=p["live_release_id"], live_version=p["live_version"],
                      missing_ok=p["missing_ok"], sqlite_path=database if p["kind"] == "sqlite" else None,
                      database=database if p["kind"] == "postgresql" else None)
        if module.check_mode:
            manifest = predict(directory, common)
        else:
            manifest = _backup.take_backup(directory=directory, **common)
        if manifest is None:
            result["skipped_reason"] = (f"nothing to back up yet: {database} "
                                        f"{'does not exist' if p['kind'] == 'sqlite' else 'has no table'}")
        else:
            result.update(changed=True, backup=_backup.public(manifest), backup_id=manifest["backup_id"])
        if p["prune"]:
            manifests, _invalid = _backup.list_manifests(directory)
            leftover = _backup.orphans(directory, manifests)
            if module.check_mode and manifest is not None:
                manifests.append(manifest)  # the predicted backup takes its place among the newest
            keep, plan = _backup.plan_retention(manifests, p["keep_last"], p["keep_daily"], p["keep_weekly"],
                                                protected_ids=[result["backup_id"]],
                                                protected_releases=p["protected_releases"])
            result["kept"] = keep
            result["pruned"] = [m["backup_id"] for m in plan]
            if plan or leftover:
                result["changed"] = True
                if not module.check_mode:
                    _backup.prune(plan, leftover)
    except (_backup.BackupError, OSError) as exc:
        module.fail_json(msg=f"{what}: {exc}", **result)
    module.exit_json(**result)


def predict(directory, common):
    """What a backup would be, from read-only checks only (check mode)."""
    if common["kind"] == "sqlite":
        if not os.path.exists(common["sqlite_path"]):
            if common["missing_ok"]:
                return None
            raise _backup.BackupError(f"the SQLite database {common['sqlite_path']} does not exist")
    else:
        tables = _backup.pg_tables(common["tools"], common["database"])
        if common["missing_ok"] and not tables:
            return None
    spec, _argv = _backup.compressor(common["compression"])
    now = _backup.utcnow()
    backup_id = _backup.new_backup_id(directory, now)
    return {
        "backup_id": backup_id, "app": common["app"], "db_kind": common["kind"],
        "release_id": common["release_id"] or None, "live_release_id": common["live_release_id"] or None,
        "live_version": common["live_version"] or None, "compression": common["compression"],
        "file": f"{backup_id}.{_backup.DUMP_EXT[common['kind']]}.{spec['ext']}", "created_at": _backup.iso(now),
        "path": os.path.join(directory, f"{backup_id}.{_backup.DUMP_EXT[common['kind']]}.{spec['ext']}"),
    }
