# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-app deploy lock, the "in progress" record beside it, and the per-host audit log.

Private to shipit.deploy (used by the deploy_lock and audit_log modules).

On a host, for an app, in ``<lock_dir>/<app>/``:

``deploy.lock``
    JSON: who holds the lock (who, CI run URL, version, controller, target, times, the run's token).
    Taken with link(2) of a fully written temp file: the kernel creates the name only if it does not
    exist, atomically (the O_EXCL guarantee), and the lock appears complete or not at all — never
    check-then-write, never a half-written lock.
``in_progress.json``
    JSON: the operation of the holder that is changing the host (release, version, stage, started_at,
    holder). Written by the holder at each stage and removed when the operation has finished, so a run
    that was killed (SIGKILL, a cancelled CI job: no rescue, no always) leaves it behind for the next run.
``.guard``
    An flock(2)ed file around the few read-compare-write steps (break a stale lock, release, write the
    record). The kernel drops an flock when its process dies, so the guard itself can never go stale.

The audit log, ``<lock_dir>/audit.log``, is one JSON object per line, opened O_APPEND and written with one
write(2) under an flock, so lines of concurrent writers never interleave and nothing is ever rewritten.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time

from ansible_collections.shipit.deploy.plugins.module_utils import _files, _ledger

LOCK_FILE = "deploy.lock"
PROGRESS_FILE = "in_progress.json"
GUARD_FILE = ".guard"
AUDIT_FILE = "audit.log"
POLL_INTERVAL = 0.25


class LockError(Exception):
    pass


class LockLost(LockError):
    """The caller's lock is gone or another run holds it now (it expired and was broken)."""


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def app_dir(lock_dir, app):
    return os.path.join(lock_dir, _ledger.check_name("app", app))


def _paths(directory):
    return (os.path.join(directory, LOCK_FILE), os.path.join(directory, PROGRESS_FILE),
            os.path.join(directory, GUARD_FILE))


def read_json(path):
    """The JSON document at path; None when absent; a placeholder for an unreadable one (never hides a lock)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict):
            return data
        raise ValueError("not a JSON object")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return None
        return {"unreadable": f"{path}: {exc}", "who": "unknown (unreadable lock file)", "token": None,
                "acquired_ts": mtime, "acquired_at": iso(mtime), "version": "unknown"}


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def guard(directory):
    fd = os.open(os.path.join(directory, GUARD_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_dir(directory):
    os.makedirs(directory, mode=0o750, exist_ok=True)


def expires_ts(lock, default_ttl):
    if isinstance(lock.get("expires_ts"), (int, float)):
        return lock["expires_ts"]
    return float(lock.get("acquired_ts") or 0) + default_ttl


def is_stale(lock, now, default_ttl):
    return now >= expires_ts(lock, default_ttl)


def describe(lock, app=None, target=None):
    """'locked by <who> since <when> (<version>)' and what the holder was doing."""
    where = f"{app} on {target} is " if app and target else ""
    text = f"{where}locked by {lock.get('who') or 'unknown'} since {lock.get('acquired_at') or 'unknown'} ({lock.get('version') or 'no version'})"
    extra = [lock.get("operation") or "", f"release {lock['release_id']}" if lock.get("release_id") else "",
             f"from {lock['controller']}" if lock.get("controller") else "", lock.get("ci_url") or ""]
    extra = [e for e in extra if e]
    if extra:
        text += ": " + ", ".join(extra)
    if lock.get("expires_at"):
        text += f"; the lock expires at {lock['expires_at']} unless its run renews it"
    return text


def new_lock(holder, ttl, now):
    lock = {k: v for k, v in holder.items() if v not in (None, "")}
    lock.update(acquired_ts=now, acquired_at=iso(now), expires_ts=now + ttl, expires_at=iso(now + ttl), ttl=ttl,
                target=holder.get("target") or socket.gethostname())
    return lock


def acquire(directory, holder, ttl, wait=0.0, check_mode=False, now=time.time, sleep=time.sleep, on_break=None,
            break_token=None):
    """Take the lock for holder (a dict with at least ``token``) or find it held.

    Returns a dict: acquired (bool), changed (bool), lock (the lock in place: ours or the holder's),
    broken (the lock that was removed, with ``broken_because``, or None), interrupted (the in-progress
    record of another run, or None). A lock already held by the same token is renewed (its expiry moves),
    not re-taken. Waits at most ``wait`` seconds for a lock held by a live run. A lock past its expiry is
    broken (``stale``), and so is the lock of ``break_token``, a run the caller knows is dead (``dead``).
    on_break(lock, because) is called for each lock broken.
    """
    token = holder.get("token")
    if not token:
        raise LockError("a lock holder needs a token (the id of its run)")
    lock_path, progress_path, _guard = _paths(directory)
    if not check_mode:
        ensure_dir(directory)
    deadline = now() + max(wait, 0)
    broken = None
    while True:
        current = read_json(lock_path)
        moment = now()
        if current is None:
            mine = new_lock(holder, ttl, moment)
            if check_mode:
                return _acquired(mine, True, broken, progress_path, token)
            tmp = _files.write_json_temp(directory, mine, ".lock.")
            try:
                os.link(tmp, lock_path)  # atomic create-if-absent: exactly one of N racing runs succeeds
            except FileExistsError:
                continue  # someone else won the race: read who
            finally:
                _unlink(tmp)
            _files.fsync_dir(directory)
            return _acquired(mine, True, broken, progress_path, token)
        if current.get("token") == token:
            if check_mode:
                return _acquired(current, False, broken, progress_path, token)
            return _acquired(renew(directory, token, ttl, now=now), False, broken, progress_path, token)
        dead = break_token is not None and current.get("token") == break_token
        if dead or is_stale(current, moment, ttl):
            because = "dead" if dead else "stale"
            if check_mode:
                return _acquired(new_lock(holder, ttl, moment), True, dict(current, broken_because=because),
                                 progress_path, token)
            with guard(directory):
                again = read_json(lock_path)
                # Compare-and-delete under the guard: only the very lock seen dead or stale is removed.
                if again is not None and again.get("token") == current.get("token") and (
                        dead or is_stale(again, now(), ttl)):
                    _unlink(lock_path)
                    _files.fsync_dir(directory)
                    broken = dict(again, broken_because=because)
                    if on_break:
                        on_break(again, because)
            continue
        if moment >= deadline:
            return {"acquired": False, "changed": False, "lock": current, "broken": broken,
                    "interrupted": read_json(progress_path)}
        sleep(min(POLL_INTERVAL, max(deadline - moment, 0.01)))


def _acquired(lock, changed, broken, progress_path, token):
    progress = read_json(progress_path)
    interrupted = progress if progress is not None and progress.get("token") != token else None
    return {"acquired": True, "changed": changed, "lock": lock, "broken": broken, "interrupted": interrupted}


def _held(directory, token):
    lock_path = _paths(directory)[0]
    current = read_json(lock_path)
    if current is None:
        raise LockLost("the lock is no longer held (released or broken as stale): stopping before any further change")
    if current.get("token") != token:
        raise LockLost("the lock was taken over, it is now " + describe(current) + ": stopping before any further change")
    return current


def renew(directory, token, ttl, now=time.time):
    """Move the expiry of our lock to now + ttl (the heartbeat of a long run). LockLost if it is not ours."""
    with guard(directory):
        current = _held(directory, token)
        moment = now()
        current.update(expires_ts=moment + ttl, expires_at=iso(moment + ttl), ttl=ttl, renewed_at=iso(moment))
        _files.write_json_atomic(_paths(directory)[0], current)
        return current


def write_progress(directory, token, record, ttl, replace_other=False, check_mode=False, now=time.time):
    """Record the stage of our run beside the lock (and renew the lock). Returns (changed, record, replaced).

    A record left by another run (an interrupted one) is only replaced with replace_other, once the
    caller has dealt with it.
    """
    _lock_path, progress_path, _guard = _paths(directory)
    if not check_mode and not os.path.isdir(directory):
        raise LockLost("the lock is no longer held (released or broken as stale): stopping before any further change")
    if check_mode:
        existing = read_json(progress_path)
        return True, dict(record, token=token), existing if existing and existing.get("token") != token else None
    with guard(directory):
        lock = _held(directory, token)
        existing = read_json(progress_path)
        replaced = None
        if existing is not None and existing.get("token") != token:
            if not replace_other:
                raise LockError(
                    "an interrupted run is recorded beside the lock (" + describe_progress(existing) + "): "
                    "recover it first (the deploy, rollback and unlock playbooks do)")
            replaced = existing
        moment = now()
        new = {k: v for k, v in record.items() if v not in (None, "")}
        new.update(token=token, who=lock.get("who"), controller=lock.get("controller"), updated_at=iso(moment))
        mine = existing if existing is not None and existing.get("token") == token else None
        new["started_at"] = mine.get("started_at") if mine else iso(moment)
        changed = mine is None or any(mine.get(k) != v for k, v in new.items() if k != "updated_at")
        _files.write_json_atomic(progress_path, new)
        lock.update(expires_ts=moment + ttl, expires_at=iso(moment + ttl), renewed_at=iso(moment))
        _files.write_json_atomic(_paths(directory)[0], lock)
        return changed, new, replaced


def describe_progress(record):
    return (f"{record.get('operation') or 'operation'} of {record.get('version') or '?'} "
            f"(release {record.get('release_id') or '?'}) by {record.get('who') or 'unknown'}, "
            f"started {record.get('started_at') or '?'}, interrupted at stage {record.get('stage') or '?'}")


def release(directory, token=None, force=False, clear_progress=True, check_mode=False):
    """Release the lock held by token (or any lock with force).

    Returns a dict: released (bool), changed (bool), lock (the lock removed, or the one still held by
    another run), progress_cleared (bool), interrupted (an in-progress record still in place, or None).
    Our own in-progress record is removed with clear_progress; another run's record never is (a forced
    unlock must not hide an interrupted run from the next one).
    """
    lock_path, progress_path, _guard = _paths(directory)
    if not os.path.isdir(directory):
        return {"released": False, "changed": False, "lock": None, "progress_cleared": False, "interrupted": None}
    with guard(directory) if not check_mode else contextlib.nullcontext():
        current = read_json(lock_path)
        progress = read_json(progress_path)
        ours = current is not None and token is not None and current.get("token") == token
        released = current is not None and (ours or force)
        clear = clear_progress and progress is not None and token is not None and progress.get("token") == token
        if not check_mode:
            if released:
                _unlink(lock_path)
            if clear:
                _unlink(progress_path)
            if released or clear:
                _files.fsync_dir(directory)
        left = None if clear else progress
        return {"released": released, "changed": released or clear, "lock": current, "progress_cleared": clear,
                "interrupted": left if left is not None and left.get("token") != token else None}


def status(directory):
    lock_path, progress_path, _guard = _paths(directory)
    return read_json(lock_path), read_json(progress_path)


def audit_entry(event, result, fields, now=time.time):
    entry = {k: v for k, v in fields.items() if v not in (None, "", {}, [])}
    entry.update(time=iso(now()), event=event, result=result)
    entry.setdefault("target", socket.gethostname())
    return entry


def append_audit(path, entry):
    """Append one JSON line; never rewrites what is there. Mode 0640, directory created 0750."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o750, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def read_audit(path, app=None, last=None):
    """The audit entries (oldest first), optionally of one app and only the last N; bad lines are skipped."""
    entries = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (app is None or entry.get("app") == app):
                    entries.append(entry)
    except FileNotFoundError:
        return []
    return entries[-last:] if last else entries
