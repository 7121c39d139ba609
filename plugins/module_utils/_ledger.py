# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host release ledger: the single source of truth for what is live, good, failed and rolled back.

Private to shipit.deploy (used by the release_ledger and release_ledger_info modules).
The ledger is one JSON document, ``<ledger_dir>/<app>/ledger.json``, always replaced atomically
(temp file in the same directory, fsync, rename, fsync of the directory), so a killed run leaves
either the old or the new ledger, never half of one.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.shipit.deploy.plugins.module_utils import _files

STATUSES = ("live", "good", "failed", "rolled_back")
LEDGER_VERSION = 1
# Release ids and app names become directory names: no separators, no dot-dot, nothing exotic.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class LedgerError(Exception):
    pass


def check_name(kind, value):
    if not SAFE_NAME.match(value or "") or ".." in value:
        raise LedgerError(
            f"{kind} {value!r} is not a safe name: use letters, digits, '.', '_', '+' and '-' (no '/', no '..')"
        )
    return value


def ledger_path(ledger_dir, app):
    return os.path.join(ledger_dir, check_name("app", app), "ledger.json")


def empty_ledger(app):
    return {"ledger_version": LEDGER_VERSION, "app": app, "releases": []}


def load(path, app):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return empty_ledger(app)
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("releases"), list):
        raise LedgerError(f"the ledger {path} is not a shipit ledger (no 'releases' list)")
    return data


def save(path, data, mode=0o640):
    """Write the whole ledger atomically (see _files)."""
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    _files.write_json_atomic(path, data, mode)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(data, release):
    """The entry with release id ``release``, else the newest of that version that did not fail; None if absent."""
    releases = data["releases"]
    by_id = [e for e in releases if e.get("release_id") == release]
    if by_id:
        return by_id[-1]
    by_version = [e for e in releases if e.get("version") == release]
    usable = [e for e in by_version if e.get("status") != "failed"]
    return (usable or by_version or [None])[-1]


def live(data):
    return next((e for e in reversed(data["releases"]) if e.get("status") == "live"), None)


def previous_good(data):
    """The newest ``good`` release that is not live: the default rollback target."""
    return next((e for e in reversed(data["releases"]) if e.get("status") == "good"), None)


def record(data, release_id, status, fields, previous_status="good"):
    """Return (new ledger, changed, before entry, after entry) with ``release_id`` set to ``status``.

    Setting a release live demotes the release that was live to ``previous_status``
    (``good`` after a deploy, ``rolled_back`` after a rollback).
    """
    check_name("release id", release_id)
    if status not in STATUSES:
        raise LedgerError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    new = json.loads(json.dumps(data))
    entry = next((e for e in new["releases"] if e.get("release_id") == release_id), None)
    before = dict(entry) if entry else None
    if entry is None:
        if not fields.get("version"):
            raise LedgerError(f"release {release_id} is not in the ledger yet: its version is required")
        entry = {"release_id": release_id, "created_at": now_iso()}
        new["releases"].append(entry)
    updates = {k: v for k, v in fields.items() if v is not None}
    updates["status"] = status
    if status == "live":
        for other in new["releases"]:
            if other is not entry and other.get("status") == "live":
                other["status"] = previous_status
                other["updated_at"] = now_iso()
    changed = before is None or any(before.get(k) != v for k, v in updates.items()) or new != data
    if changed:
        entry.update(updates)
        entry["updated_at"] = now_iso()
    else:
        new = data
    return new, changed, before, dict(entry)
