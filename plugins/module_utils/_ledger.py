# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host release ledger: the single source of truth for what is live, good, failed and rolled back.

Private to shipit.deploy (used by the release_ledger and release_ledger_info modules).
The ledger is one JSON document, ``<ledger_dir>/<app>/ledger.json``, always replaced atomically
(temp file in the same directory, fsync, rename, fsync of the directory), so a killed run leaves
either the old or the new ledger, never half of one.

It stays bounded: every write by release_ledger keeps the releases whose files are on the host (live, good,
rolled_back) and only the newest failed and pruned ones (trim). A release whose directory a prune removed is
recorded ``pruned`` by the module that removed it (record_pruned), so no rollback picks it.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.shipit.deploy.plugins.module_utils import _files

STATUSES = ("live", "good", "failed", "rolled_back", "pruned")
# How many failed and pruned releases a write keeps by default (release_ledger's keep_failed, keep_pruned).
KEEP_FAILED = 10
KEEP_PRUNED = 10
LEDGER_VERSION = 1
# Release ids and app names become directory names: no separators, no dot-dot, nothing exotic.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class LedgerError(Exception):
    pass


class PrunedError(LedgerError):
    """The release asked for is in the ledger, but its files were pruned from the host."""


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
    """The entry with release id ``release``, else the newest of that version that did not fail; None if absent.

    Raises PrunedError when the only match is a release whose files were pruned: it cannot be rolled back to.
    """
    releases = data["releases"]
    matches = [e for e in releases if e.get("release_id") == release]
    if not matches:
        by_version = [e for e in releases if e.get("version") == release]
        usable = [e for e in by_version if e.get("status") not in ("failed", "pruned")]
        failed = [e for e in by_version if e.get("status") == "failed"]
        matches = usable or failed or by_version
    if not matches:
        return None
    entry = matches[-1]
    if entry.get("status") == "pruned":
        raise PrunedError(
            f"release {entry.get('release_id')} ({entry.get('version')}) of {data.get('app')} was pruned"
            f"{' on ' + entry['updated_at'] if entry.get('updated_at') else ''}: its files are no longer on the host,"
            " so it cannot be rolled back to (`shipit history` lists the good releases)"
        )
    return entry


def live(data):
    return next((e for e in reversed(data["releases"]) if e.get("status") == "live"), None)


def previous_good(data):
    """The newest ``good`` release that is not live: the default rollback target (never a pruned one)."""
    return next((e for e in reversed(data["releases"]) if e.get("status") == "good"), None)


def trim(releases, keep_failed=KEEP_FAILED, keep_pruned=KEEP_PRUNED, keep_ids=()):
    """(kept, dropped): the entries without the failed ones older than the newest ``keep_failed`` and the pruned
    ones older than the newest ``keep_pruned``. Entries on disk or of an unknown status stay; so do the ones in
    ``keep_ids``, which count among the newest all the same."""
    limits = {"failed": keep_failed, "pruned": keep_pruned}
    seen = {"failed": 0, "pruned": 0}
    kept, dropped = [], []
    for entry in reversed(releases):  # newest first
        status = entry.get("status")
        if status in limits:
            seen[status] += 1
            if seen[status] > limits[status] and entry.get("release_id") not in keep_ids:
                dropped.append(entry)
                continue
        kept.append(entry)
    return kept[::-1], dropped[::-1]


def mark_pruned(data, removed, present=None):
    """Return (new ledger, release ids marked) with the releases whose directory is gone set to ``pruned``.

    removed: release ids a prune just removed (whatever their status). present: the release ids still on the
    host, or None; a ``good`` or ``rolled_back`` release not among them is gone too (a ledger written before
    pruned releases were recorded). A failed release not in ``removed`` is left as it is: it may never have had
    a directory. The live release is never marked. The entry keeps its version, reason and times; its former
    status is kept as ``pruned_from``.
    """
    new = json.loads(json.dumps(data))
    removed = set(removed)
    marked = []
    for entry in new["releases"]:
        status, release_id = entry.get("status"), entry.get("release_id")
        if status in ("live", "pruned"):
            continue
        gone = release_id in removed or (
            present is not None and status in ("good", "rolled_back") and release_id not in present)
        if gone:
            entry.update(status="pruned", pruned_from=status, updated_at=now_iso())
            marked.append(release_id)
    return (new if marked else data), marked


def record_pruned(ledger_dir, app, removed, present=None, check_mode=False):
    """Record in the ledger of ``app`` that these releases were pruned (see mark_pruned); the ids marked.

    An application without a ledger gets none: there is nothing to mark.
    """
    path = ledger_path(ledger_dir, app)
    data = load(path, app)
    new, marked = mark_pruned(data, removed, present)
    if marked and not check_mode:
        save(path, new)
    return marked


def record(data, release_id, status, fields, previous_status="good", keep_failed=None, keep_pruned=None):
    """Return (new ledger, changed, before entry, after entry) with ``release_id`` set to ``status``.

    Setting a release live demotes the release that was live to ``previous_status``
    (``good`` after a deploy, ``rolled_back`` after a rollback). With ``keep_failed`` or ``keep_pruned`` the
    ledger is trimmed too (see trim); the release recorded is always kept.
    """
    check_name("release id", release_id)
    if status not in STATUSES:
        raise LedgerError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    for name, value in (("keep_failed", keep_failed), ("keep_pruned", keep_pruned)):
        if value is not None and value < 0:
            raise LedgerError(f"{name} must be 0 or more, got {value}")
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
    if before is None or any(before.get(k) != v for k, v in updates.items()) or new != data:
        entry.update(updates)
        entry["updated_at"] = now_iso()
    if keep_failed is not None or keep_pruned is not None:
        new["releases"], _dropped = trim(
            new["releases"],
            KEEP_FAILED if keep_failed is None else keep_failed,
            KEEP_PRUNED if keep_pruned is None else keep_pruned,
            keep_ids=(release_id,),
        )
    changed = new != data
    if not changed:
        new = data
    return new, changed, before, dict(entry)
