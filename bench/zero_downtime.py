"""Requests a client loses during deploys and rollbacks: traffic switching against the restart in place.

    python bench/zero_downtime.py [--runs N]

Starts a fresh lab (python -m lab down, up) and builds pulse's tarballs. web1 runs pulse behind the front proxy
(the lab's configuration); web2 runs the same pulse restarted in place (shipit_http_port null, pulse itself on
port 8080). During every operation a client (lab/prober.py) calls the host's public port every 20 ms. Measured
on each host, alternating the hosts round after round: a deploy of a new release (--runs times, medians), the
automatic rollback of a broken release, a manual rollback. On web1 also a bake that catches a release turning
unhealthy 2 s after its switch (the prober calls /version, which that release keeps answering), with the
host-side seconds of the switch back (the traffic module's switch_seconds).

Writes bench/results/<UTC date>-zero-downtime.json and .md, and prints the Markdown table.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DIST = REPO / "examples" / "pulse" / "dist"
PUBLIC = {"web1": "http://127.0.0.1:18001", "web2": "http://127.0.0.1:18002"}
# web2: the lab's pulse without traffic switching, listening itself on the port the lab publishes.
IN_PLACE = {"shipit_http_port": None, "systemd_service_env": {
    "PULSE_LISTEN_HOST": "0.0.0.0", "PULSE_PORT": "8080", "PULSE_DATABASE_URL": "sqlite:////srv/pulse/shared/data/pulse.db"}}
TIMEOUT = 900

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "molecule" / "zero_downtime"))
from lab.prober import Prober  # noqa: E402


def run(argv, env=None):
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT, check=False, env=env)
    return time.monotonic() - started, proc


def playbook(name, host, extra, env=None):
    extra = dict(extra, **({} if host == "web1" else IN_PLACE))
    return run([str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", "inventories/lab", "--limit",
                f"{host},localhost", "-e", json.dumps(extra)], env=env)


def probed(host, name, extra, path="/health", expect_ok=True, env=None):
    prober = Prober(PUBLIC[host] + path, interval=0.02, max_seconds=TIMEOUT)
    prober.start()
    time.sleep(0.5)
    seconds, proc = playbook(name, host, extra, env=env)
    time.sleep(0.5)
    prober.stop()
    if (proc.returncode == 0) != expect_ok:
        sys.exit(f"{name} {extra} on {host} {'failed' if expect_ok else 'was not refused'}:\n{proc.stdout[-3000:]}")
    return dict(prober.summary(), seconds=round(seconds, 2)), proc


def switch_seconds(output):
    """The traffic module's switch_seconds in a run's JSON callback output."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "switch_seconds" in node:
                found.append(node["switch_seconds"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(json.loads(output[output.index("{"):]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args(argv)

    import build_releases  # molecule/zero_downtime/build_releases.py

    run([str(BIN / "python"), "-m", "lab", "down"])
    seconds, proc = run([str(BIN / "python"), "-m", "lab", "up"])
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:])
    build_releases.main(str(DIST))
    for host in PUBLIC:
        _s, proc = playbook("deploy.yml", host, {"shipit_version": "1.0.0"})
        if proc.returncode != 0:
            sys.exit(proc.stdout[-3000:])

    figures = {host: {"deploy": []} for host in PUBLIC}
    versions = ["1.1.0", "1.0.0"]
    for n in range(args.runs):
        for host in (PUBLIC if n % 2 == 0 else reversed(list(PUBLIC))):
            figures[host]["deploy"].append(probed(host, "deploy.yml", {"shipit_version": versions[n % 2]})[0])
    for host in PUBLIC:
        figures[host]["automatic rollback of a broken release"] = probed(
            host, "deploy.yml", {"shipit_version": "1.2.0"}, expect_ok=False)[0]
        figures[host]["manual rollback"] = probed(host, "rollback.yml", {})[0]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    bake, proc = probed("web1", "deploy.yml", {"shipit_version": "1.3.0-souring"}, path="/version", expect_ok=False,
                        env=env)
    bake["switch_seconds"] = switch_seconds(proc.stdout)
    figures["web1"]["bake catches a release turning unhealthy"] = bake

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    result = {"date": date, "runs": args.runs, "hosts": {"web1": "traffic switching", "web2": "restart in place"},
              "figures": figures}
    out = Path(args.out) / f"{date}-zero-downtime.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    out.with_suffix(".md").write_text(f"# Requests lost, {date}\n\n`python bench/zero_downtime.py --runs {args.runs}`"
                                      f" on the lab; a client calls the public port every 20 ms.\n\n{table}\n")
    print(table)
    print(f"\nwritten: {out.relative_to(REPO)} and {out.with_suffix('.md').relative_to(REPO)}")


def render(result):
    lines = ["| operation | host | failed requests (of) | longest outage (s) | wall time (s) |",
             "|---|---|---|---|---|"]
    for host, mode in result["hosts"].items():
        for name, figure in result["figures"][host].items():
            if isinstance(figure, list):
                failed = "; ".join(f"{f['failed']} of {f['requests']}" for f in figure)
                outage = statistics.median(f["longest_outage_s"] for f in figure)
                wall = statistics.median(f["seconds"] for f in figure)
                name = f"{name} (median of {len(figure)})"
            else:
                failed, outage, wall = f"{figure['failed']} of {figure['requests']}", figure["longest_outage_s"], figure["seconds"]
                if "switch_seconds" in figure:
                    name += f" (the proxy's switches on the host, there and back: {', '.join(f'{s:.3f} s' for s in figure['switch_seconds'])})"
            lines.append(f"| {name} | {host} ({mode}) | {failed} | {outage} | {wall} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
