"""Overhead of the shipit command over a bare ansible-playbook run of the same deploy:

    python bench/shipit_overhead.py [--runs 3] [--host ci1]

Each round, on one lab host: a deploy of a new release with `shipit deploy` and one with
`ansible-playbook playbooks/deploy.yml` (same inventory, same --limit, the version alternating between pulse
1.0.0 and 1.1.0 so every deploy makes a release), then an idempotent re-run with each. The order of the two
commands alternates between rounds, so a machine that gets slower or faster during the run favours neither.
Prints the medians, their ratio shipit / ansible-playbook and the median of the rounds' own ratios (the two runs
of a round ran back to back), and writes bench/results/<UTC date>-shipit-overhead.json.
Needs the lab host (python -m lab up --hosts HOST) and the pulse tarballs 1.0.0 and 1.1.0.
"""

import argparse
import datetime
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


CPU = []  # CPU seconds (user + system) of each timed command and its children, in the order they ran


def timed(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([str(a) for a in argv], cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host", default="ci1")
    args = parser.parse_args()
    runs_dir = Path(tempfile.mkdtemp(prefix="shipit-overhead-"))
    count = iter(range(1_000_000))

    def shipit(version):
        return timed([BIN / "shipit", "deploy", "--env", "lab", "--version", version, "--limit", args.host, "--plain",
                      "--artifacts-dir", runs_dir / f"run-{next(count)}"])

    def bare(version):
        return timed([BIN / "ansible-playbook", "-i", "inventories/lab", "playbooks/deploy.yml",
                      "-e", f"shipit_version={version}", "--limit", f"{args.host},localhost"])

    samples = {"new_release": {"shipit": [], "ansible-playbook": []},
               "idempotent_rerun": {"shipit": [], "ansible-playbook": []}}
    cpu = {figure: {"shipit": [], "ansible-playbook": []} for figure in samples}
    try:
        bare("1.0.0")  # a known starting point: 1.0.0 live
        live = "1.0.0"
        for round_ in range(args.runs):
            order = [("shipit", shipit), ("ansible-playbook", bare)]
            if round_ % 2:
                order.reverse()
            for name, deploy in order:  # each deploys the other version: always a new release
                live = "1.1.0" if live == "1.0.0" else "1.0.0"
                samples["new_release"][name].append(deploy(live))
                cpu["new_release"][name].append(CPU[-1])
            for name, deploy in order:
                samples["idempotent_rerun"][name].append(deploy(live))
                cpu["idempotent_rerun"][name].append(CPU[-1])
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": args.host, "runs": args.runs, "command": " ".join(sys.argv), "figures": {}}
    print("| deploy | shipit median (s) | ansible-playbook median (s) | ratio of medians | median of paired ratios "
          "| overhead (s) | CPU time ratio |\n|---|---|---|---|---|---|---|")
    for figure, by_tool in samples.items():
        ours, bare_ = statistics.median(by_tool["shipit"]), statistics.median(by_tool["ansible-playbook"])
        # The two runs of a round ran back to back: their ratio is the least disturbed by a busy machine.
        paired = statistics.median(a / b for a, b in zip(by_tool["shipit"], by_tool["ansible-playbook"]))
        result["figures"][figure] = {
            "median_seconds": {"shipit": round(ours, 2), "ansible-playbook": round(bare_, 2)},
            "ratio": round(ours / bare_, 3), "median_paired_ratio": round(paired, 3),
            "overhead_seconds": round(ours - bare_, 2),
            "samples": {k: [round(x, 2) for x in v] for k, v in by_tool.items()},
            # CPU time hardly depends on what else the machine runs: the cost of the runner and the events.
            "cpu_seconds_median": {k: round(statistics.median(v), 2) for k, v in cpu[figure].items()},
            "cpu_ratio": round(statistics.median(cpu[figure]["shipit"]) / statistics.median(cpu[figure]["ansible-playbook"]), 3),
            "cpu_samples": {k: [round(x, 2) for x in v] for k, v in cpu[figure].items()}}
        print(f"| {figure} | {ours:.2f} | {bare_:.2f} | {ours / bare_:.3f} | {paired:.3f} | {ours - bare_:+.2f} "
              f"| {result['figures'][figure]['cpu_ratio']:.3f} |")
    out = REPO / "bench" / "results" / f"{datetime.date.today().isoformat()}-shipit-overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
