"""Wall times of shipit's systemd deploys on the lab: python bench/deploy_bench.py [--runs N] [--host web1]

Each repetition, on one lab host: a deploy of a new release (alternating pulse 1.0.0 and 1.1.0), an
idempotent re-run of the same version, and a manual rollback; plus the floor, an ansible-playbook run with
no tasks over the same connection. Prints medians (and ratios to the floor) and writes
bench/results/<UTC date>-deploy.json. Needs the lab (python -m lab up) and built pulse tarballs.
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def timed(*argv, expect_rc=0):
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != expect_rc:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return elapsed


def playbook(name, host, *extra):
    return timed(ANSIBLE_PLAYBOOK, "-i", "inventories/lab", f"playbooks/{name}", "-e", f"shipit_hosts={host}", *extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host", default="web1")
    args = parser.parse_args()
    floor_play = REPO / "bench" / "noop.yml"
    samples = {"noop_playbook": [], "deploy_new_release": [], "idempotent_rerun": [], "manual_rollback": []}
    playbook("deploy.yml", args.host, "-e", "shipit_version=1.0.0")  # known starting point
    for run in range(args.runs):
        version = "1.1.0" if run % 2 == 0 else "1.0.0"
        samples["noop_playbook"].append(timed(ANSIBLE_PLAYBOOK, "-i", "inventories/lab", str(floor_play),
                                              "-e", f"shipit_hosts={args.host}"))
        samples["deploy_new_release"].append(playbook("deploy.yml", args.host, "-e", f"shipit_version={version}"))
        samples["idempotent_rerun"].append(playbook("deploy.yml", args.host, "-e", f"shipit_version={version}"))
        samples["manual_rollback"].append(playbook("rollback.yml", args.host))
        # Back to a state where the rollback target is good again for the next repetition.
        playbook("deploy.yml", args.host, "-e", f"shipit_version={version}")
    floor = statistics.median(samples["noop_playbook"])
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": args.host, "runs": args.runs,
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in samples.items()},
        "ratio_to_noop": {k: round(statistics.median(v) / floor, 2) for k, v in samples.items()},
        "samples": {k: [round(x, 2) for x in v] for k, v in samples.items()},
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"{datetime.date.today().isoformat()}-deploy.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| figure | median (s) | × no-task playbook |\n|---|---|---|")
    for key in samples:
        print(f"| {key} | {result['median_seconds'][key]} | {result['ratio_to_noop'][key]} |")
    print(f"\nwritten to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
