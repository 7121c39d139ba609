"""shipit.deploy benchmarks, every figure a ratio to a baseline measured in the same run:

    python bench/run.py [--smoke] [--runs N] [--fleet 1 4 8 16] [--skip compose backup tuning fleet]

Brings up the bench's own lab hosts (bench/inventory: bench01..bench16, benchstack1; never the lab's), builds
pulse's tarballs and images, then measures, alternating shipit and its baseline round after round (the order
flips every round) and taking medians:

- floor: an ansible-playbook run with one ping (bench/noop.yml) vs the bare deploy (bench/baseline.sh);
- systemd on bench01: deploy of a new release, idempotent re-run, manual rollback, automatic rollback of a
  broken release, each vs the bare deploy (copy, unpack, migrate, switch, restart, poll /health over one
  reused SSH connection) of a separate instance, pulse-bare, on the same host;
- Compose on benchstack1: deploy, re-run, rollback vs the bare Compose deploy (docker load, compose up --wait);
- backups: bench/backup_bench.py (shipit's db_backup vs sqlite3/pg_dump + zstd) at ~100 MB and ~1 GB;
- fleet: deploy to 1, 4, 8, 16 hosts in one batch vs the bare deploy run on as many hosts in parallel;
- tuning, each on/off: pipelining, ControlPersist, fact gathering, forks, Mitogen;
- tasks per deploy and the per-stage breakdown, from the report.json of `shipit deploy`.

Writes bench/results/<UTC date>.json and .md, and prints the Markdown table.
--smoke: 1 repetition, 1 host, tiny databases (what CI runs). Remove the hosts: python -m lab --inventory
bench/inventory down.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVENTORY = "bench/inventory"
DIST = REPO / "examples" / "pulse" / "dist"
KEY = REPO / ".lab" / "id_ed25519"
VERSIONS = ("1.0.0", "1.1.0")
BROKEN = "1.9.0-broken"
STACK = "benchstack1"
# The health budget of the lab's pulse checks (group_vars/app/pulse.yml): 20 retries, 0.5 s apart.
HEALTH_BUDGET = 20 * 0.5
TIMEOUT = 900
INOTIFY_INSTANCES = 1024
# backup_bench.py's --size-gb per run: smoke asks for the least, which its first batch of rows already exceeds
# (~90 MiB SQLite, ~200 MiB PostgreSQL).
BACKUP_LABELS = {0.01: "smallest", 0.1: "~100 MB", 1.0: "~1 GB"}

sys.path.insert(0, str(REPO))
from lab import hosts as lab_hosts  # noqa: E402


class Failed(RuntimeError):
    pass


def run(argv, env=None, timeout=TIMEOUT, expect_ok=True, stdin=None):
    """Run a command from the repository root; return (seconds, process)."""
    started = time.monotonic()
    proc = subprocess.run([str(a) for a in argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False, stdin=stdin)
    elapsed = time.monotonic() - started
    if expect_ok and proc.returncode != 0:
        raise Failed(f"{shlex.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return elapsed, proc


def ansible_env(**overrides):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               ANSIBLE_HOME=os.environ.get("ANSIBLE_HOME", str(REPO / ".cache" / "ansible")))
    env.update({k: str(v) for k, v in overrides.items()})
    return env


RECAPS = {}  # playbook -> the PLAY RECAP line of each host in its last run


def playbook(name, hosts, *extra, env=None, expect_ok=True):
    path = name if "/" in name else f"playbooks/{name}"
    elapsed, proc = run([BIN / "ansible-playbook", "-i", INVENTORY, path, "-e", f"shipit_hosts={hosts}",
                         "-e", "shipit_serial=100%", *extra], env=env or ansible_env(), expect_ok=expect_ok)
    RECAPS[name] = {m["host"]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
                    for m in re.finditer(r"^(?P<host>\S+)\s+: (?P<counts>ok=.*)$", proc.stdout, re.M)}
    return elapsed


class Bench:
    def __init__(self, args):
        self.args = args
        self.hosts = lab_hosts.lab_hosts(INVENTORY)
        self.figures = {}
        self.notes = []
        self.live = {}  # host -> version live in shipit's instance
        self.recap_new_release = None

    # -- the baseline ------------------------------------------------------------------------------
    def bare(self, host, version):
        port = self.hosts[host]["ansible_port"]
        return run(["bash", "bench/baseline.sh", port, DIST / f"pulse-{version}.tar.gz", version, KEY])[0]

    def bare_fleet(self, names, version):
        """The bare deploy on every host at once (one process per host, like forks)."""
        started = time.monotonic()
        procs = [subprocess.Popen(["bash", "bench/baseline.sh", str(self.hosts[h]["ansible_port"]),
                                   str(DIST / f"pulse-{version}.tar.gz"), version, str(KEY)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for h in names]
        for proc in procs:
            _out, err = proc.communicate(timeout=TIMEOUT)
            if proc.returncode != 0:
                raise Failed(f"bench/baseline.sh failed on a fleet host: {err[-2000:]}")
        return time.monotonic() - started

    def bare_compose(self, version):
        port = self.hosts[STACK]["ansible_port"]
        return run(["bash", "bench/baseline.sh", "--compose", port, DIST / f"pulse-{version}.image.tar", version,
                    KEY])[0]

    # -- measuring ---------------------------------------------------------------------------------
    def record(self, figure, ours, base, baseline, **extra):
        entry = self.figures.setdefault(figure, {"baseline": baseline, "shipit": [], "bare": [], **extra})
        entry["shipit"].append(round(ours, 3))
        entry["bare"].append(round(base, 3))

    def paired(self, round_, figure, ours_fn, base_fn, baseline, **extra):
        """One A/B pair: the order flips every round, so a machine getting busier favours neither."""
        if round_ % 2:
            base = base_fn()
            ours = ours_fn()
        else:
            ours = ours_fn()
            base = base_fn()
        self.record(figure, ours, base, baseline, **extra)
        print(f"bench: {figure}: {ours:.2f}s vs {base:.2f}s", flush=True)

    def shipit_deploy(self, host, version, *extra, env=None):
        elapsed = playbook("deploy.yml", host, "-e", f"shipit_version={version}", *extra, env=env)
        self.live[host] = version
        return elapsed

    def start_from(self, host):
        """A known live version, untimed: what the host answers, else a first deploy. The first round then
        deploys the other version, so its rollback always has a target."""
        live = self.health_version(host)
        if live in VERSIONS:
            self.live[host] = live
        else:
            self.shipit_deploy(host, VERSIONS[0])

    def other(self, version):
        return VERSIONS[1] if version == VERSIONS[0] else VERSIONS[0]

    def health_version(self, host, port=8080):
        _t, proc = run(lab_hosts.ssh_argv(self.hosts[host], f"curl -s --max-time 2 http://127.0.0.1:{port}/health"),
                       expect_ok=False, timeout=30)
        try:
            return json.loads(proc.stdout).get("version")
        except ValueError:
            return None

    # -- preparation ---------------------------------------------------------------------------------
    def prepare(self, host_names):
        # Every systemd host takes inotify instances of the same (root) user: the kernel's default of 128 is
        # spent at about 20 of them beside the lab, and their units then fail with "resources".
        limit = Path("/proc/sys/fs/inotify/max_user_instances")
        if len(host_names) > 4 and int(limit.read_text()) < INOTIFY_INSTANCES:
            print(f"bench: raising fs.inotify.max_user_instances to {INOTIFY_INSTANCES} for "
                  f"{len(host_names)} hosts", flush=True)
            limit.write_text(f"{INOTIFY_INSTANCES}\n")
        print(f"bench: bringing up {' '.join(host_names)}", flush=True)
        run([sys.executable, "-m", "lab", "--inventory", INVENTORY, "up", "--hosts", *host_names], timeout=1800)
        DIST.mkdir(parents=True, exist_ok=True)
        for version in VERSIONS:
            if not (DIST / f"pulse-{version}.tar.gz").exists():
                run([sys.executable, "examples/pulse/build.py", "tarball", "--version", version])
        run([sys.executable, "examples/pulse/build.py", "tarball", "--version", BROKEN, "--broken"])
        setup = (REPO / "bench" / "baseline_setup.sh").read_text()
        for host in host_names:  # pulse-bare, the baseline's own instance: set up once, untimed
            proc = subprocess.run(lab_hosts.ssh_argv(self.hosts[host], "sudo bash -s"), input=setup, text=True,
                                  capture_output=True, timeout=120, check=False)
            if proc.returncode != 0:
                raise Failed(f"setting up pulse-bare on {host} failed: {proc.stderr[-2000:]}")

    def prepare_compose(self):
        for version in VERSIONS:
            archive = DIST / f"pulse-{version}.image.tar"
            if not archive.exists():
                run([sys.executable, "examples/pulse/build.py", "image", "--version", version])
                run(["docker", "save", f"pulse:{version}", "-o", archive])
        if not (DIST / "postgres.image.tar").exists():
            run(["docker", "save", "shipit-lab/postgres:latest", "-o", DIST / "postgres.image.tar"])

    # -- the figures ---------------------------------------------------------------------------------
    def systemd(self, runs):
        host = "bench01"
        self.start_from(host)
        self.bare(host, VERSIONS[1])  # the baseline's first release and its master connection, untimed
        noop = lambda: playbook("bench/noop.yml", host)  # noqa: E731
        for round_ in range(runs):
            version = self.other(self.live[host])
            bare = lambda: self.bare(host, version)  # noqa: E731
            self.paired(round_, "floor: ansible-playbook, 1 task", noop, bare, "bare deploy")
            self.paired(round_, "systemd deploy, new release", lambda: self.shipit_deploy(host, version), bare,
                        "bare deploy")
            self.recap_new_release = RECAPS["deploy.yml"].get(host)
            self.paired(round_, "systemd idempotent re-run", lambda: self.shipit_deploy(host, version), bare,
                        "bare deploy")
            self.paired(round_, "systemd manual rollback", lambda: playbook("rollback.yml", host), bare,
                        "bare deploy")
            self.shipit_deploy(host, version)  # the rolled-back release live again: next round starts the same

            def broken():
                elapsed = playbook("deploy.yml", host, "-e", f"shipit_version={BROKEN}", expect_ok=False)
                answer = self.health_version(host)
                if answer != version:
                    raise Failed(f"automatic rollback: {host} answers {answer!r}, expected {version}")
                return elapsed
            self.paired(round_, "systemd automatic rollback", broken, bare, "bare deploy",
                        health_budget=HEALTH_BUDGET)

    def compose(self, runs):
        self.prepare_compose()
        self.start_from(STACK)
        self.bare_compose(VERSIONS[1])
        for round_ in range(runs):
            version = self.other(self.live[STACK])
            bare = lambda: self.bare_compose(version)  # noqa: E731
            self.paired(round_, "Compose deploy, new release", lambda: self.shipit_deploy(STACK, version), bare,
                        "bare Compose deploy")
            self.paired(round_, "Compose idempotent re-run", lambda: self.shipit_deploy(STACK, version), bare,
                        "bare Compose deploy")
            self.paired(round_, "Compose manual rollback", lambda: playbook("rollback.yml", STACK), bare,
                        "bare Compose deploy")
            self.shipit_deploy(STACK, version)

    def fleet(self, sizes, runs):
        for round_ in range(runs):
            for size in sizes:
                names = [f"bench{i:02d}" for i in range(1, size + 1)]
                version = self.other(self.live.get("bench01", VERSIONS[0]))

                def ours():
                    elapsed = playbook("deploy.yml", ",".join(names), "-e", f"shipit_version={version}")
                    self.live.update(dict.fromkeys(names, version))
                    return elapsed
                self.paired(round_, f"fleet deploy, {size} hosts", ours, lambda: self.bare_fleet(names, version),
                            f"bare deploy on {size} hosts in parallel", hosts=size)

    def tuning(self, runs, fleet_size, light=False):
        """Each setting on/off around the idempotent re-run (light: around the 1-task play, for smoke runs)."""
        host = "bench01"
        version = self.live[host]
        what = "1-task play" if light else "re-run"
        if light:
            target = lambda **env: (lambda: playbook("bench/noop.yml", host, env=ansible_env(**env)))  # noqa: E731
        else:
            target = lambda **env: (lambda: self.shipit_deploy(host, version, env=ansible_env(**env)))  # noqa: E731
        no_control = "-o ControlMaster=no -o PreferredAuthentications=publickey"
        facts = lambda subset: (lambda: playbook("bench/facts.yml", host, "-e", f"bench_facts={subset}"))  # noqa: E731
        names = ",".join(f"bench{i:02d}" for i in range(1, fleet_size + 1))
        if light:
            fleet_rerun = lambda forks: (lambda: playbook("bench/noop.yml", names,  # noqa: E731
                                                          env=ansible_env(ANSIBLE_FORKS=forks)))
        else:
            fleet_rerun = lambda forks: (lambda: playbook("deploy.yml", names, "-e", f"shipit_version={version}",  # noqa: E731
                                                          env=ansible_env(ANSIBLE_FORKS=forks)))
        mitogen = self.mitogen_env()
        for round_ in range(runs):
            self.paired(round_, f"tuning: pipelining off ({what})", target(ANSIBLE_PIPELINING="False"), target(),
                        f"{what}, pipelining on")
            self.paired(round_, f"tuning: ControlPersist off ({what})", target(ANSIBLE_SSH_ARGS=no_control), target(),
                        f"{what}, ControlPersist on")
            self.paired(round_, "tuning: all facts (1-task play)", facts("all"), facts("none"), "no facts")
            self.paired(round_, "tuning: min facts (1-task play)", facts("min"), facts("none"), "no facts")
            self.paired(round_, f"tuning: forks 1 ({fleet_size}-host {what})", fleet_rerun(1), fleet_rerun(20),
                        "forks 20")
            if mitogen is not None:
                try:
                    self.paired(round_, f"tuning: Mitogen ({what})", target(**mitogen), target(), f"{what}, linear")
                except Failed as exc:
                    self.notes.append(f"Mitogen failed with {self.ansible_version()}: "
                                      f"{str(exc).strip().splitlines()[-1][:300]}")
                    mitogen = None

    def mitogen_env(self):
        try:
            import ansible_mitogen
        except ImportError:
            self.notes.append("Mitogen not measured: pip install mitogen (requirements-dev.txt)")
            return None
        plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
        # Mitogen's own SSH client checks host keys unless told not to (it does not read StrictHostKeyChecking
        # from ansible_ssh_common_args); the lab's host keys change on every `lab up`.
        return {"ANSIBLE_STRATEGY_PLUGINS": plugins, "ANSIBLE_STRATEGY": "mitogen_linear",
                "ANSIBLE_HOST_KEY_CHECKING": "False"}

    def ansible_version(self):
        return run([BIN / "ansible", "--version"])[1].stdout.split("\n")[0]

    def breakdown(self):
        """Tasks per host and seconds per stage of one deploy, from shipit's own report.json."""
        host = "bench01"
        version = self.other(self.live[host])
        with tempfile.TemporaryDirectory(prefix="shipit-bench-") as tmp:
            run([BIN / "shipit", "deploy", "--env", "inventory", "--inventories", "bench", "--version", version,
                 "--limit", host, "--plain", "--artifacts-dir", Path(tmp) / "run"], env=ansible_env())
            report = json.loads((Path(tmp) / "run" / "report.json").read_text())
        self.live[host] = version
        [entry] = [h for h in report["hosts"] if h["name"] == host]
        # ansible-playbook's recap of the last timed deploy of a new release: ok (changed included) and skipped.
        recap = self.recap_new_release or {}
        return {"duration": report["duration"], "tasks_on_host": sum(s["tasks"] for s in entry["stages"]),
                "recap_new_release": recap,
                "changed_tasks": sum(s["changed"] for s in entry["stages"]),
                "stages": [{"stage": s["name"], "seconds": s["duration"], "tasks": s["tasks"]}
                           for s in entry["stages"]]}

    def backups(self, sizes_gb, runs):
        """bench/backup_bench.py, `runs` times for small sizes, once at 1 GB and more (each run makes new data)."""
        out = {}
        for size in sizes_gb:
            for _ in range(runs if size < 1 else 1):
                with tempfile.TemporaryDirectory(prefix="shipit-bench-backup-") as tmp:
                    os.chmod(tmp, 0o755)  # the PostgreSQL cluster runs as the postgres user
                    results = Path(tmp) / "results.json"
                    run([sys.executable, "bench/backup_bench.py", "--size-gb", size, "--work", Path(tmp) / "work",
                         "--json", results], timeout=3600)
                    rows = json.loads(results.read_text())
                label = BACKUP_LABELS.get(size, f"--size-gb {size}")
                for db, op, pipeline, seconds, _size in rows:
                    out.setdefault(f"{db} {op}, {label}", []).append((pipeline, seconds))
        for name, rows in out.items():
            ours = [s for p, s in rows if p.startswith("shipit") and "ansible" not in p]
            # The bare tools with the same compression (zstd, not pg_dump's gzip) and, for a SQLite restore,
            # the same integrity check shipit makes.
            bare = [(p, s) for p, s in rows if p.startswith("bare") and "gzip" not in p]
            if any("integrity" in p for p, _s in bare):
                bare = [(p, s) for p, s in bare if "integrity" in p]
            self.figures[name] = {"baseline": bare[0][0], "shipit": [round(s, 3) for s in ours],
                                  "bare": [round(s, 3) for _p, s in bare]}


def summarise(figures):
    rows = {}
    for name, entry in figures.items():
        ours, bare = statistics.median(entry["shipit"]), statistics.median(entry["bare"])
        pairs = [a / b for a, b in zip(entry["shipit"], entry["bare"]) if b > 0]
        rows[name] = {**entry, "shipit_median": round(ours, 3), "bare_median": round(bare, 3),
                      "ratio": round(statistics.median(pairs), 2) if pairs else None, "n": len(entry["shipit"])}
    return rows


def markdown(result):
    lines = ["| figure | shipit median (s) | baseline | baseline median (s) | ratio (median of pairs) | n |",
             "|---|---|---|---|---|---|"]
    for name, row in result["figures"].items():
        baseline = row["baseline"].replace("|", "\\|")  # a shell pipeline inside a table cell
        lines.append(f"| {name} | {row['shipit_median']:.2f} | {baseline} | {row['bare_median']:.2f} "
                     f"| {row['ratio']} | {row['n']} |")
    derived = result.get("derived", {})
    if derived:
        lines += ["", "| derived | value | target |", "|---|---|---|"]
        for name, (value, target) in derived.items():
            lines.append(f"| {name} | {value} | {target} |")
    breakdown = result["breakdown"]
    if breakdown:
        lines += ["", f"Per-stage breakdown of one 1-host deploy (`shipit deploy`, {breakdown['duration']:.1f} s, "
                      f"{breakdown['tasks_on_host']} tasks in the host's stages, {breakdown['changed_tasks']} changed; "
                      f"ansible-playbook's recap of a new release: {recap_text(breakdown['recap_new_release'])}):", "",
                  "| stage | seconds | tasks |", "|---|---|---|"]
        lines += [f"| {s['stage']} | {s['seconds']:.2f} | {s['tasks']} |" for s in breakdown["stages"]]
    if result.get("notes"):
        lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def recap_text(recap):
    if not recap:
        return "-"
    return f"ok={recap.get('ok')} (changed={recap.get('changed')}), skipped={recap.get('skipped')}"


def derive(rows, fleet_sizes):
    """The issue's targets (#15) against this run's medians and ratios."""
    def med(name):
        return rows[name]["shipit_median"] if name in rows else None

    def ratio(name):
        return rows[name]["ratio"] if name in rows else None
    floor, deploy = med("floor: ansible-playbook, 1 task"), med("systemd deploy, new release")
    out = {}
    if deploy:
        out["systemd deploy (s)"] = (round(deploy, 2), "≤ 2.5")
        out["systemd deploy / bare"] = (ratio("systemd deploy, new release"), "≤ 5")
    if floor and deploy:
        out["systemd deploy / floor"] = (round(deploy / floor, 2), "≤ 1.7")
    for name, target in (("systemd idempotent re-run", "≤ 1.5"), ("systemd manual rollback", "≤ 1.5")):
        if med(name):
            out[f"{name} (s)"] = (round(med(name), 2), target)
    if med("systemd automatic rollback"):
        out["automatic rollback − health budget (s)"] = (round(med("systemd automatic rollback") - HEALTH_BUDGET, 2),
                                                         f"≤ 2.5 (budget {HEALTH_BUDGET} s)")
    if ratio("Compose deploy, new release"):
        out["Compose deploy / bare"] = (ratio("Compose deploy, new release"), "≤ 2")
    big, one = max(fleet_sizes), min(fleet_sizes)
    if ratio(f"fleet deploy, {big} hosts"):
        out[f"fleet {big} hosts / bare on {big} hosts"] = (ratio(f"fleet deploy, {big} hosts"), "≤ 4")
    if med(f"fleet deploy, {big} hosts") and med(f"fleet deploy, {one} hosts"):
        out[f"fleet {big} hosts / {one} host"] = (round(med(f"fleet deploy, {big} hosts") /
                                                       med(f"fleet deploy, {one} hosts"), 2), "")
    for name, row in rows.items():
        if name.startswith(("sqlite", "postgresql")) and " backup," in name:
            out[f"{name} / bare"] = (row["ratio"], "≤ 1.2")
    return out


def render(path):
    """The tables of an earlier run again (derived targets recomputed from its figures), measuring nothing."""
    result = json.loads(path.read_text())
    sizes = sorted(row["hosts"] for row in result["figures"].values() if "hosts" in row) or [1]
    result["derived"] = derive(result["figures"], sizes)
    print(save(result, path))
    return 0


def save(result, path):
    """Write the result as JSON at path and as Markdown beside it; return the tables."""
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    table = markdown(result)
    path.with_suffix(".md").write_text(
        f"# Benchmarks {result['date']}\n\n`{result['command']}` ({result['ansible']}, {result['cores']} cores, "
        f"load average {result['load_average'][0]} at the end)\n\n" + table)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="1 repetition, 1 host, tiny databases (CI)")
    parser.add_argument("--runs", type=int, help="repetitions of every A/B pair (default 5, smoke 1)")
    parser.add_argument("--fleet", type=int, nargs="+", help="fleet sizes (default 1 4 8 16, smoke 1)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["compose", "backup", "tuning", "fleet"])
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory of the results")
    parser.add_argument("--render", metavar="JSON", help="only write the .md of an earlier run's .json again")
    args = parser.parse_args(argv)
    if args.render:
        return render(Path(args.render))
    runs = args.runs or (1 if args.smoke else 5)
    sizes = sorted(args.fleet or ([1] if args.smoke else [1, 4, 8, 16]))
    if max(sizes) > 16 or min(sizes) < 1:
        parser.error("fleet sizes go from 1 to 16 (bench01..bench16)")
    backup_sizes = [0.01] if args.smoke else [0.1, 1.0]
    started = time.monotonic()
    bench = Bench(args)
    fleet_hosts = [f"bench{i:02d}" for i in range(1, max(sizes) + 1)]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d") + ("-smoke" if args.smoke else "")
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    state = {"breakdown": None, "complete": False}

    def write():
        """The results so far (after every section: a run that fails later keeps what it measured)."""
        rows = summarise(bench.figures)
        result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "command": command, "complete": state["complete"], "smoke": args.smoke, "runs": runs,
                  "cores": os.cpu_count(), "ansible": bench.ansible_version(),
                  "load_average": [round(x, 1) for x in os.getloadavg()],
                  "seconds": round(time.monotonic() - started, 1), "health_budget": HEALTH_BUDGET,
                  "figures": rows, "derived": derive(rows, sizes), "breakdown": state["breakdown"],
                  "notes": bench.notes}
        return save(result, out_dir / f"{stem}.json")

    sections = [("systemd", lambda: bench.systemd(runs)),
                ("breakdown", lambda: state.update(breakdown=bench.breakdown())),
                ("compose", lambda: bench.compose(runs)),
                ("backup", lambda: bench.backups(backup_sizes, runs)),
                ("tuning", lambda: bench.tuning(runs, min(4, max(sizes)), light=args.smoke)),
                ("fleet", lambda: bench.fleet(sizes, runs))]
    try:
        bench.prepare(fleet_hosts + ([] if "compose" in args.skip else [STACK]))
        for name, section in sections:
            if name not in args.skip:
                section()
                write()
    except (Failed, subprocess.SubprocessError) as exc:
        write()
        print(f"bench: error: {exc}\nbench: what was measured is in {out_dir / stem}.json", file=sys.stderr)
        return 1
    state["complete"] = True
    print(write())
    print(f"bench: written to {out_dir / stem}.json and .md in {time.monotonic() - started:.0f}s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
