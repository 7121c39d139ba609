"""Recorded runner events of real runs against the lab (events/*.jsonl, see record_events.py) and helpers."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
if str(REPO) not in sys.path:  # the checkout's shipit package, installed or not
    sys.path.insert(0, str(REPO))

from shipit.report import ReportBuilder  # noqa: E402

EVENTS = HERE / "events"
SCHEMA = json.loads((REPO / "docs" / "report-schema.json").read_text())

# Each recording, the exit code and outcome the run really had, and what was done to get it.
RECORDINGS = {
    "deploy_upgrade_ok": (0, "1.0.0 live, deploy 1.1.0"),
    "deploy_check": (0, "deploy --check"),
    "deploy_rolled_back": (4, "1.1.0 live, deploy the broken 1.2.0: health check fails, rolled back"),
    "deploy_refused_version": (1, "deploy --version '1.0.0;rm -rf /': the plan refuses it"),
    "deploy_missing_artifact": (2, "deploy --version 9.9.9, never built: preflight refuses"),
    "deploy_unreachable": (1, "-e ansible_port=2299: unreachable in preflight"),
    "deploy_lock_held": (1, "another run (alice) holds the deploy lock"),
    "deploy_first_broken": (3, "nothing live, deploy the broken 1.2.0: nothing to roll back to"),
    "deploy_rollback_failed": (5, "1.1.0 live but its release directory moved away, deploy the broken 1.2.0"),
    "deploy_live_unhealthy": (3, "after that: 1.1.0 is live in the ledger but 1.2.0 runs; deploy 1.1.0 again: "
                                 "nothing to release, its health check fails, nothing to roll back to"),
    "rollback_manual_ok": (0, "shipit rollback to the newest good release"),
    "rollback_refused": (1, "shipit rollback --to 7.7.7, not in the ledger"),
    "history": (0, "shipit history"),
    "backup": (0, "shipit backup"),
    "restore_test": (0, "shipit restore --test: the backup restores into a scratch copy"),
    # deploy.yml as one play whose rescue ends the host with `fail` (the systemd slice's shape).
    "singleplay_deploy_ok": (0, "1.0.0 live, deploy 1.1.0"),
    "singleplay_rolled_back": (4, "1.1.0 live, deploy the broken 1.2.0"),
}


def load(name):
    """(meta, events) of a recording."""
    lines = (EVENTS / f"{name}.jsonl").read_text().splitlines()
    meta = json.loads(lines[0])["meta"]
    return meta, [json.loads(line) for line in lines[1:]]


def builder_for(name, **callbacks):
    meta, events = load(name)
    builder = ReportBuilder(meta["operation"], meta["env"], version=meta["version"], check=meta["check"],
                            limit=meta["limit"], **callbacks)
    for event in events:
        builder.feed(event)
    builder.close()
    return meta, builder


def report_for(name):
    meta, builder = builder_for(name)
    return builder.build(runner_status=meta["runner_status"], rc=0 if meta["runner_status"] == "successful" else 2,
                         runner={"ident": name, "run_dir": f"/runs/{name}", "artifact_dir": f"/runs/{name}/artifacts/{name}"})
