# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe files: the JSON of the ledger, the deploy lock and the backup manifests, and files written whole
(environment files, units).

A reader sees the old file or the new one, never a part: the new content goes to a temp file in the same
directory, is fsynced, then renamed (or linked) over the final name, and the directory is fsynced.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_temp(directory, data, prefix, mode=0o640):
    """A fully written, fsynced temp file of data as JSON in directory, created O_EXCL; the caller renames or
    links it."""
    return _write_temp(directory, _json_bytes(data), prefix, mode)


def write_json_atomic(path, data, mode=0o640):
    """Replace path with data as JSON atomically."""
    write_file_atomic(path, _json_bytes(data), mode)


def write_file_atomic(path, data, mode=0o640, uid=-1, gid=-1):
    """Replace path with the bytes data atomically, owned by uid:gid (-1 keeps the caller's) with mode."""
    tmp = _write_temp(os.path.dirname(path), data, "." + os.path.basename(path) + ".", mode, uid, gid)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def _json_bytes(data):
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _write_temp(directory, data, prefix, mode, uid=-1, gid=-1):
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp
