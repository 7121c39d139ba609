"""Re-record an event fixture from a real run: python tests/unit/shipit/record_events.py RUN_DIR NAME

RUN_DIR is a shipit run directory (`shipit deploy ... --artifacts-dir RUN_DIR`). The runner's events
(artifacts/<ident>/job_events) are written to events/NAME.jsonl in order, cut down to what shipit.report
reads (every field it uses is kept; module arguments, bodies and other bulk are dropped) and with the
checkout's path replaced by /repo. The run's shipit-run.json goes to the first line.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from shipit.report import load_events  # noqa: E402

DATA_KEYS = ("host", "task", "task_uuid", "task_path", "role", "resolved_action", "play_pattern", "ignore_errors",
             "start", "end")
KINDS = ("playbook_on_start", "playbook_on_play_start", "playbook_on_stats")  # and every runner_* event
RES_KEYS = ("msg", "changed", "failed", "skipped", "unreachable", "healthy", "attempts", "elapsed", "steps",
            "_ansible_item_label", "holder", "progress_text", "backup_id", "releases")
FACT_KEYS = ("shipit_release_id", "__rollback_target", "shipit_outcome", "shipit_backup_id")


def slim_res(res):
    out = {k: res[k] for k in RES_KEYS if k in res}
    if isinstance(res.get("last_failure"), dict):
        out["last_failure"] = {k: res["last_failure"].get(k) for k in ("assertion", "reason", "error")}
    elif "last_failure" in res:
        out["last_failure"] = None
    if isinstance(res.get("item"), dict) and "name" in res["item"]:
        out["item"] = {"name": res["item"]["name"]}
    if isinstance(res.get("step_results"), dict):  # shipit.deploy.agent: each step's result, slimmed the same way
        out["step_results"] = {name: slim_res(r) for name, r in res["step_results"].items() if isinstance(r, dict)}
    facts = {k: v for k, v in (res.get("ansible_facts") or {}).items() if k in FACT_KEYS}
    if facts:
        out["ansible_facts"] = facts
    app = ((res.get("invocation") or {}).get("module_args") or {}).get("app")
    if app:
        out["invocation"] = {"module_args": {"app": app}}
    if isinstance(res.get("results"), list):
        out["results"] = [slim_res(r) for r in res["results"] if isinstance(r, dict)]
    return out


def slim(event):
    out = {k: event[k] for k in ("event", "counter", "created") if k in event}
    data = event.get("event_data") or {}
    kept = {k: data[k] for k in DATA_KEYS if data.get(k) is not None}
    if isinstance(data.get("res"), dict):
        kept["res"] = slim_res(data["res"])
    if event.get("event") == "playbook_on_stats":
        kept.update({k: data.get(k) for k in ("ok", "changed", "failures", "dark", "skipped", "rescued", "artifact_data")
                     if k in data})
    if kept:
        out["event_data"] = kept
    return out


def main():
    run_dir, name = Path(sys.argv[1]), sys.argv[2]
    meta = json.loads((run_dir / "shipit-run.json").read_text())
    status = (run_dir / "artifacts" / meta["ident"] / "status").read_text().strip()
    header = {k: meta.get(k) for k in ("operation", "env", "version", "limit", "check")}
    header["runner_status"] = status
    lines = [json.dumps({"meta": header})]
    for event in load_events(run_dir / "artifacts" / meta["ident"]):
        if not (event.get("event", "").startswith("runner_") or event.get("event") in KINDS):
            continue
        lines.append(json.dumps(slim(event), sort_keys=True).replace(str(REPO), "/repo"))
    (HERE / "events" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    print(f"{name}: {len(lines) - 1} events")


if __name__ == "__main__":
    main()
