"""A client that calls the app every 20 ms while something happens to it, and counts what it got.

Used by the zero-downtime tests (molecule/zero_downtime) and by the demo, which shows its live counter:

    python -m lab.prober http://127.0.0.1:18001/health --max-seconds 600 --until-file /tmp/stop

A request failed when it got no answer, or an answer that is not 200. Each answer's "version" (pulse's
/health and /version carry it) is counted, so a test can tell which release answered. Bounded: it stops at
max_seconds whatever happens.
"""

import argparse
import collections
import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit


class Prober(threading.Thread):
    def __init__(self, url, interval=0.02, timeout=3.0, max_seconds=900.0):
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path or "/"
        self.interval, self.timeout, self.max_seconds = interval, timeout, max_seconds
        self.ok = 0
        self.failed = 0
        self.versions = collections.Counter()
        self.failures = collections.Counter()
        self.longest_outage = 0.0
        self._outage_start = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    @property
    def total(self):
        return self.ok + self.failed

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        conn = None
        while not self._halt.is_set() and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read()
                if response.will_close:
                    conn.close()
                    conn = None
                self._count(response.status == 200, f"HTTP {response.status}", body)
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                self._count(False, type(exc).__name__, b"")
            self._halt.wait(self.interval)
        if conn is not None:
            conn.close()

    def _count(self, passed, what, body):
        now = time.monotonic()
        with self._lock:
            try:
                version = json.loads(body).get("version") if body.startswith(b"{") else None
            except ValueError:
                version = None
            if version:
                self.versions[version] += 1
            if passed:
                self.ok += 1
                if self._outage_start is not None:
                    self.longest_outage = max(self.longest_outage, now - self._outage_start)
                    self._outage_start = None
            else:
                self.failed += 1
                self.failures[what] += 1
                if self._outage_start is None:
                    self._outage_start = now

    def stop(self):
        self._halt.set()
        self.join(timeout=self.timeout + 1)
        if self._outage_start is not None:
            self.longest_outage = max(self.longest_outage, time.monotonic() - self._outage_start)
        return self

    def summary(self):
        with self._lock:
            return {"requests": self.total, "ok": self.ok, "failed": self.failed, "failures": dict(self.failures),
                    "versions": dict(self.versions), "longest_outage_s": round(self.longest_outage, 3)}

    def line(self):
        s = self.summary()
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(s["versions"].items()))
        return f"requests {s['requests']}, failed {s['failed']} (answered by {versions or 'nobody'})"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.prober", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--until-file", help="stop when this file exists")
    parser.add_argument("--json", help="write the final counts as JSON to this file")
    args = parser.parse_args(argv)
    prober = Prober(args.url, interval=args.interval, max_seconds=args.max_seconds)
    prober.start()
    try:
        while prober.is_alive() and not (args.until_file and os.path.exists(args.until_file)):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    prober.stop()
    summary = prober.summary()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle)
    print(f"prober {args.url}: {prober.line()}, longest outage {summary['longest_outage_s']} s", flush=True)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
