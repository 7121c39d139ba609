# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host checks run before a deploy changes anything: programs, free disk space, listening ports.

Private to shipit.deploy (used by the host_preflight module). Every problem is a dict
``{"check", "problem", "fix"}``: what is wrong, and what to do about it.
"""

from __future__ import annotations

import os
import pwd
import shutil

LISTEN = "0A"


def missing_binaries(binaries, path=None):
    return [name for name in binaries if shutil.which(name, path=path) is None]


def check_binaries(binaries, package_hints=None, path=None):
    missing = missing_binaries(binaries, path)
    if not missing:
        return []
    hints = package_hints or {}
    packages = sorted({hints.get(name, name) for name in missing})
    return [{"check": "binaries", "problem": "required programs are missing: " + ", ".join(missing),
             "fix": "install them, e.g. apt-get install " + " ".join(packages)}]


def existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_mb(path):
    stat = os.statvfs(existing_ancestor(path))
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


def check_disk(requirements):
    """requirements: [{"path", "min_free_mb", "why"}]; returns (problems, {path: free_mb})."""
    problems, seen = [], {}
    for req in requirements:
        path = req["path"]
        free = free_mb(path)
        seen[path] = free
        need = int(req["min_free_mb"])
        if free < need:
            why = f" ({req['why']})" if req.get("why") else ""
            problems.append({
                "check": "disk",
                "problem": f"only {free} MB free on {existing_ancestor(path)} for {path}, {need} MB needed{why}",
                "fix": "free space there (old releases, backups, logs) or, if the estimate is too high, lower the threshold",
            })
    return problems, seen


def _listening_sockets(port, proc="/proc"):
    """{inode: uid} of the TCP sockets listening on port (IPv4 and IPv6)."""
    sockets = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", name), encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != LISTEN:
                        continue
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        sockets[fields[9]] = int(fields[7])
        except FileNotFoundError:
            continue
    return sockets


def _owner_pids(inodes, proc="/proc"):
    """{inode: [pid]}: the processes holding each socket (those whose fds this process may read)."""
    targets = {f"socket:[{inode}]": inode for inode in inodes}
    owners = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            for fd in os.listdir(fd_dir):
                try:
                    inode = targets.get(os.readlink(os.path.join(fd_dir, fd)))
                except OSError:
                    continue
                if inode is not None:
                    owners.setdefault(inode, []).append(int(entry))
                    break
        except OSError:
            continue
    return owners


def _user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _process(pid, proc="/proc"):
    def read(name):
        try:
            with open(os.path.join(proc, str(pid), name), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""
    units = set()
    for line in read("cgroup").splitlines():
        units.update(part for part in line.split(":", 2)[-1].split("/") if part)
    return {"pid": pid, "name": read("comm").strip(), "cgroup_units": sorted(units)}


def listeners(port, proc="/proc"):
    """The processes listening on port: pid, name, systemd units of their cgroup, user of the socket.

    Without the right to read another user's file descriptors (no CAP_SYS_PTRACE, or another namespace)
    the pid stays unknown, but the socket's user is always known.
    """
    sockets = _listening_sockets(port, proc)
    if not sockets:
        return []
    owners = _owner_pids(sockets, proc)
    found = []
    for inode, uid in sorted(sockets.items()):
        pids = owners.get(inode) or [None]
        for pid in pids:
            entry = _process(pid, proc) if pid else {"pid": None, "name": "unknown", "cgroup_units": []}
            entry["user"] = _user(uid)
            found.append(entry)
    return found


def describe(found):
    """Who listens, for a message: name, pid and user of each process, or only the user where the pid is unknown."""
    return ", ".join(f"{p['name']} (pid {p['pid']}, user {p['user']})" if p["pid"] else f"a process of user {p['user']}"
                     for p in found)


def check_ports(ports, owners, owner_users=(), proc="/proc"):
    """ports must be free, or held only by the app: processes of the owner units, or sockets of owner_users."""
    problems, seen = [], {}
    for port in ports:
        found = listeners(int(port), proc)
        seen[str(port)] = found
        foreign = [p for p in found if not (set(p["cgroup_units"]) & set(owners) or p.get("user") in owner_users)]
        if foreign:
            who = describe(foreign)
            expected = " or ".join(list(owners) + [f"user {u}" for u in owner_users]) or "the app"
            problems.append({
                "check": "ports",
                "problem": f"port {port} is in use by {who}, not by {expected}",
                "fix": f"stop or move what listens on port {port}, or give the app another port",
            })
    return problems, seen


def summary(host, problems):
    lines = [f"({n}) {p['problem']}; fix: {p['fix']}" for n, p in enumerate(problems, 1)]
    return f"preflight failed on {host}, nothing was changed: " + " ".join(lines)
