#!/usr/bin/env python3
"""Build the pulse releases of the zero-downtime tests into DIR: good ones (build.py) and faulty ones.

  build_releases.py DIR            release tarballs (the systemd host's artifacts)
  build_releases.py DIR --images   images saved with `docker save` as DIR/pulse-<version>.image.tar (the Compose
                                   host's artifacts; the tags are removed again), 1.4.0-slowvisits left out

  1.0.0, 1.1.0           good builds
  1.2.0                  broken: its /health always answers 503 (build.py --broken)
  1.3.0-souring          healthy on its slot, turns unhealthy 2 s after its first request through the proxy
                         (for every caller from then on); its other answers stay good: the bake must catch it
  1.3.1-slowstart        serves only 6 s after it starts: a run can be killed between its slot start and the
                         traffic move
  1.4.0-slowvisits       a good build whose GET /visits takes 8 s: a run can be killed while the old slot drains
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "safety"))

import build_faulty  # noqa: E402  (molecule/safety/build_faulty.py, which puts examples/pulse on the path)
from build_faulty import build  # noqa: E402  (examples/pulse/build.py)

HEALTH_FROM = 'healthy = db == "ok" and not BROKEN\n'
SOURING = ('healthy = db == "ok" and not BROKEN\n'
           '        # fault-test build: unhealthy for everyone from 2 s after the first request through the proxy\n'
           '        if self.headers.get("X-Forwarded-For") and not hasattr(Handler, "soured_at"):\n'
           '            Handler.soured_at = __import__("time").monotonic() + 2\n'
           '        healthy = healthy and __import__("time").monotonic() < getattr(Handler, "soured_at", float("inf"))\n')
VISITS_FROM = "    def get_visits(self):\n"
SLOW_VISITS = ("    def get_visits(self):\n"
               "        __import__('time').sleep(8)  # fault-test build: a slow request, in flight during a drain\n")


def releases():
    """(version, broken, entries or None for build.py's own files) of each release."""
    return [("1.0.0", False, None), ("1.1.0", False, None), ("1.2.0", True, None),
            ("1.3.0-souring", False, build_faulty.patched("1.3.0-souring", HEALTH_FROM, SOURING)),
            ("1.3.1-slowstart", False, build_faulty.wrapped("1.3.1-slowstart", "slow start", serve_delay=6)),
            ("1.4.0-slowvisits", False, build_faulty.patched("1.4.0-slowvisits", VISITS_FROM, SLOW_VISITS))]


def main(out, images=False):
    Path(out).mkdir(parents=True, exist_ok=True)
    for version, broken, entries in releases():
        if not images:
            print(build.build_tarball(version, broken, out, entries))
        elif version != "1.4.0-slowvisits":
            tag = build.build_image(version, broken, tag=f"shipit-molecule/pulse-zero-downtime:{version}", entries=entries)
            archive = Path(out) / f"pulse-{version}.image.tar"
            subprocess.run(["docker", "save", "--output", str(archive), tag], check=True)
            subprocess.run(["docker", "image", "rm", tag], check=True, capture_output=True)
            print(archive)


if __name__ == "__main__":
    main(sys.argv[1], images="--images" in sys.argv[2:])
