# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which ansible-playbook process a run is, and whether the process of another run is gone.

Private to shipit.deploy (used by the deploy_lock and agent action plugins, which run on the controller in a
worker that ansible-playbook forked, so the worker's parent is the run's ansible-playbook process).
A process is named by host, boot id, pid namespace, pid and start time: a pid reused by another process,
another boot or another container never looks like the same process.
"""

from __future__ import annotations

import os
import socket


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def start_time(pid):
    """Start time of pid in clock ticks since boot (field 22 of /proc/<pid>/stat), or None if it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def identity(pid=None):
    pid = pid or os.getppid()
    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = None
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pid_namespace": pid_namespace, "pid": pid, "start": start_time(pid)}


def is_gone(process, me=None):
    """True only when process ran on this very machine, boot and pid namespace and no longer runs.

    Anything else (another host, another boot, another container, missing facts) is not known to be gone.
    """
    me = me or identity()
    if not isinstance(process, dict) or not process.get("pid") or not me.get("boot_id"):
        return False
    same_place = all(process.get(key) == me.get(key) for key in ("host", "boot_id", "pid_namespace"))
    if not same_place:
        return False
    return start_time(process["pid"]) != process.get("start")


def name_the_taker(args):
    """Name this run's process in the arguments of a deploy_lock call that takes the lock; returns the name."""
    me = identity()
    args["holder_info"] = dict(args.get("holder_info") or {}, controller_process=me)
    args["controller"] = args.get("controller") or me["host"]
    return me


def dead_holder_token(result, me=None):
    """The token of the lock a deploy_lock result was refused by, when the run holding it was started on this
    controller and its process is gone (killed): the lock may be broken at once. None otherwise."""
    holder = result.get("lock") or {}
    process = (holder.get("holder_info") or {}).get("controller_process")
    if result.get("acquired") is False and not result.get("failed") and is_gone(process, me):
        return holder.get("token")
    return None
