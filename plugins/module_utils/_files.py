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
    """A fully written, fsynced temp file in directory, created O_EXCL; the caller renames or links it."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def write_json_atomic(path, data, mode=0o640):
    """Replace path with data atomically."""
    directory = os.path.dirname(path)
    tmp = write_json_temp(directory, data, "." + os.path.basename(path) + ".", mode)
    _replace(tmp, path)


def write_file_atomic(path, data, mode=0o640, uid=-1, gid=-1):
    """Replace path with the bytes data atomically, owned by uid:gid (-1 keeps the caller's) with mode."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path))
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
    _replace(tmp, path)


def _replace(tmp, path):
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path))
