#!/usr/bin/env python3
"""Build the pulse releases of the fault tests into DIR: good ones (build.py) and faulty ones.

  1.0.0, 1.1.0, 1.4.0   good builds (1.4.0 fails its health check on shipit-molecule-safety-3 only: host_vars)
  1.0.1                 a good build with 1.0.0's schema (no migration of its own)
  1.3.0-slowstart       serves only 6 s after it starts: a run can be killed right after its switch
  1.3.1-slowmigrate     its migration takes 8 s: a run can be killed before its switch
  1.5.0-flapping        answers /health once, then its process exits (systemd restarts it, again and again)
  1.6.0-crashloop       exits as soon as it starts: systemd's start limit (5 starts in 10 s) trips
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "pulse"))

import build  # noqa: E402  (examples/pulse/build.py)

WRAPPER = """#!/bin/sh
# Fault-test build of pulse: {what}
case "$1" in
  migrate) sleep {migrate_delay} ;;
  serve) sleep {serve_delay}; {serve_exit} ;;
esac
exec "$(dirname "$0")/pulse-real" "$@"
"""

FLAP_FROM = 'healthy = db == "ok" and not BROKEN\n'
FLAP_TO = ('healthy = db == "ok" and not BROKEN\n'
           '        if healthy:  # fault-test build: the process dies right after its first healthy answer\n'
           '            threading.Timer(0.2, __import__("os")._exit, (1,)).start()\n')


def write(out, version, entries):
    path = Path(out) / f"pulse-{version}.tar.gz"
    path.write_bytes(build.tarball_bytes(version, entries=entries))
    return path


def wrapped(version, what, migrate_delay=0, serve_delay=0, crash=False):
    entries = []
    for name, mode, data in build.release_entries(version):
        if name == "bin/pulse":
            entries.append(("bin/pulse-real", mode, data))
            data = WRAPPER.format(what=what, migrate_delay=migrate_delay, serve_delay=serve_delay,
                                  serve_exit="exit 1" if crash else ":").encode()
        entries.append((name, mode, data))
    return entries


def patched(version, old, new):
    """The entries of a build whose pulse/server.py has its one line old replaced by new."""
    entries = []
    for name, mode, data in build.release_entries(version):
        if name == "pulse/server.py":
            text = data.decode()
            assert text.count(old) == 1, f"pulse/server.py changed: update the fault-test build {version}"
            data = text.replace(old, new).encode()
        entries.append((name, mode, data))
    return entries


def flapping(version):
    return patched(version, FLAP_FROM, FLAP_TO)


def main(out):
    Path(out).mkdir(parents=True, exist_ok=True)
    for version in ("1.0.0", "1.0.1", "1.1.0", "1.4.0"):
        print(build.build_tarball(version, False, out))
    print(write(out, "1.3.0-slowstart", wrapped("1.3.0-slowstart", "slow start", serve_delay=6)))
    print(write(out, "1.3.1-slowmigrate", wrapped("1.3.1-slowmigrate", "slow migration", migrate_delay=8)))
    print(write(out, "1.5.0-flapping", flapping("1.5.0-flapping")))
    print(write(out, "1.6.0-crashloop", wrapped("1.6.0-crashloop", "crash loop", crash=True)))


if __name__ == "__main__":
    main(sys.argv[1])
