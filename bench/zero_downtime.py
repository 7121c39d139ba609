"""Requests a client loses during deploys and rollbacks: traffic switching against the restart in place.

    python bench/zero_downtime.py [--runs N]

Starts a fresh lab (python -m lab down, up) and builds pulse's tarballs and images. web1 runs pulse behind the
front proxy (the lab's configuration); web2 runs the same pulse restarted in place (shipit_http_port null, pulse
itself on port 8080). stack1 runs pulse + PostgreSQL as a Compose stack, first restarted in place, then (its
pulse container removed) behind the front proxy. During every operation a client (lab/prober.py) calls the
host's public port every 20 ms. Measured on each host, alternating web1 and web2 round after round: a deploy of
a new release (--runs times, medians), the automatic rollback of a broken release, a manual rollback. With
traffic switching also a bake that catches a release turning unhealthy 2 s after its switch (the prober calls
/version, which that release keeps answering), with the host-side seconds of the switch back (the traffic
module's switch_seconds).

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
PUBLIC = {"web1": "http://127.0.0.1:18001", "web2": "http://127.0.0.1:18002", "stack1": "http://127.0.0.1:18003"}
# web2: the lab's pulse without traffic switching, listening itself on the port the lab publishes.
IN_PLACE = {"shipit_http_port": None, "systemd_service_env": {
    "PULSE_LISTEN_HOST": "0.0.0.0", "PULSE_PORT": "8080", "PULSE_DATABASE_URL": "sqlite:////srv/pulse/shared/data/pulse.db"}}
# The Compose stack without traffic switching: pulse's service publishes the port the lab publishes itself.
STACK_IN_PLACE = {"shipit_http_port": None}
TIMEOUT = 900

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "molecule" / "zero_downtime"))
from lab.prober import Prober  # noqa: E402


def run(argv, env=None):
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT, check=False, env=env)
    return time.monotonic() - started, proc


def playbook(name, host, extra, env=None, in_place=False):
    extra = dict(extra, shipit_hosts=host, **({} if host == "web1" else IN_PLACE if host == "web2"
                                               else STACK_IN_PLACE if in_place else {}))
    return run([str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", "inventories/lab", "--limit",
                f"{host},localhost", "-e", json.dumps(extra)], env=env)


def probed(host, name, extra, path="/health", expect_ok=True, env=None, in_place=False):
    prober = Prober(PUBLIC[host] + path, interval=0.02, max_seconds=TIMEOUT)
    prober.start()
    time.sleep(0.5)
    seconds, proc = playbook(name, host, extra, env=env, in_place=in_place)
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


def deployed(host, in_place, version="1.0.0"):
    _s, proc = playbook("deploy.yml", host, {"shipit_version": version}, in_place=in_place)
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:])


def failures(host, runs, in_place):
    """The automatic rollback of a broken release, a manual rollback and, with traffic switching, the bake."""
    figures = {"automatic rollback of a broken release": probed(
        host, "deploy.yml", {"shipit_version": "1.2.0"}, expect_ok=False, in_place=in_place)[0]}
    figures["manual rollback"] = probed(host, "rollback.yml", {}, in_place=in_place)[0]
    if not in_place:
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        bake, proc = probed(host, "deploy.yml", {"shipit_version": "1.3.0-souring"}, path="/version", expect_ok=False,
                            env=env)
        bake["switch_seconds"] = switch_seconds(proc.stdout)
        figures["bake catches a release turning unhealthy"] = bake
    return figures


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
    build_releases.main(str(DIST), images=True)
    subprocess.run(["docker", "save", "--output", str(DIST / "postgres.image.tar"), "shipit-lab/postgres:latest"], check=True)
    for host in ("web1", "web2"):
        deployed(host, in_place=False)

    figures = {"web1": {"deploy": []}, "web2": {"deploy": []}}
    versions = ["1.1.0", "1.0.0"]
    for n in range(args.runs):
        for host in (("web1", "web2") if n % 2 == 0 else ("web2", "web1")):
            figures[host]["deploy"].append(probed(host, "deploy.yml", {"shipit_version": versions[n % 2]})[0])
    for host in ("web1", "web2"):
        figures[host].update(failures(host, args.runs, in_place=host == "web2"))
    # The stack in place first, then (its pulse container out of the way of HAProxy) behind the proxy.
    deployed("stack1", in_place=True)
    figures["stack1 in place"] = dict(deploy=[probed("stack1", "deploy.yml", {"shipit_version": versions[n % 2]},
                                                    in_place=True)[0] for n in range(args.runs)])
    figures["stack1 in place"].update(failures("stack1", args.runs, in_place=True))
    run([str(BIN / "ansible"), "stack1", "-i", "inventories/lab", "-b", "-m", "ansible.builtin.command",
         "-a", "docker compose --project-name pulse rm --stop --force pulse"])
    deployed("stack1", in_place=False, version="1.0.0")
    figures["stack1"] = dict(deploy=[probed("stack1", "deploy.yml", {"shipit_version": versions[n % 2]})[0]
                                     for n in range(args.runs)])
    figures["stack1"].update(failures("stack1", args.runs, in_place=False))

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    result = {"date": date, "runs": args.runs, "figures": figures,
              "hosts": {"web1": "systemd, traffic switching", "web2": "systemd, restart in place",
                        "stack1": "Compose, traffic switching", "stack1 in place": "Compose, restart in place"}}
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
