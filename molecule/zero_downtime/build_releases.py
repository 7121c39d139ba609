#!/usr/bin/env python3
"""Build the pulse releases of the zero-downtime tests into DIR: good ones (build.py) and faulty ones.

  1.0.0, 1.1.0           good builds
  1.2.0                  broken: its /health always answers 503 (build.py --broken)
  1.3.0-souring          healthy on its slot, turns unhealthy 2 s after its first request through the proxy
                         (for every caller from then on); its other answers stay good: the bake must catch it
  1.3.1-slowstart        serves only 6 s after it starts: a run can be killed between its slot start and the
                         traffic move
  1.4.0-slowvisits       a good build whose GET /visits takes 8 s: a run can be killed while the old slot drains
"""

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


def main(out):
    Path(out).mkdir(parents=True, exist_ok=True)
    for version in ("1.0.0", "1.1.0"):
        print(build.build_tarball(version, False, out))
    print(build.build_tarball("1.2.0", True, out))
    print(build_faulty.write(out, "1.3.0-souring", build_faulty.patched("1.3.0-souring", HEALTH_FROM, SOURING)))
    print(build_faulty.write(out, "1.3.1-slowstart", build_faulty.wrapped("1.3.1-slowstart", "slow start", serve_delay=6)))
    print(build_faulty.write(out, "1.4.0-slowvisits", build_faulty.patched("1.4.0-slowvisits", VISITS_FROM, SLOW_VISITS)))


if __name__ == "__main__":
    main(sys.argv[1])
