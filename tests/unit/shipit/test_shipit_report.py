"""report.json and report.md from the runner's events of real runs; report.json against docs/report-schema.json."""

import copy
import re

import jsonschema
import pytest
from shipit_fixtures import RECORDINGS, SCHEMA, builder_for, report_for

from shipit.progress import Progress
from shipit.report import to_markdown

VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_report_of_every_recorded_run_is_valid(name):
    report = report_for(name)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(report)]
    assert not errors
    assert report["exit_code"] == RECORDINGS[name][0]


def test_the_schema_rejects_what_it_does_not_describe():
    report = report_for("deploy_rolled_back")
    broken = copy.deepcopy(report)
    broken["hosts"][0]["stages"][0]["status"] = "fine"
    broken["exit_code"] = 7
    broken["surprise"] = True
    del broken["release_id"]
    messages = " ".join(e.message for e in VALIDATOR.iter_errors(broken))
    for expected in ("'fine' is not one of", "7 is not one of", "'surprise' was unexpected", "'release_id' is a required"):
        assert expected in messages


def test_deployed_run():
    report = report_for("deploy_upgrade_ok")
    assert (report["operation"], report["env"], report["app"], report["version"]) == ("deploy", "lab", "pulse", "1.1.0")
    assert re.fullmatch(r"\d{8}T\d{6}Z", report["release_id"])
    assert report["outcome"] == "ok" and report["summary"].endswith("deployed and healthy")
    [host] = report["hosts"]
    assert host["name"] == "ci1" and host["failure"] is None and host["rollback"] is None
    stages = [s["name"] for s in host["stages"]]
    # The deploy's stages in the order they ran, each from its own file (shipit/stages.py).
    for earlier, later in zip(["preflight", "lock", "backup", "release", "migrate", "switch", "verify", "record"],
                              ["lock", "backup", "release", "migrate", "switch", "verify", "record", "unlock"]):
        assert stages.index(earlier) < stages.index(later), stages
    by_name = {s["name"]: s for s in host["stages"]}
    assert by_name["release"]["status"] == "changed" and by_name["release"]["duration"] > 0
    assert by_name["verify"]["status"] == "ok"
    assert [(c["stage"], c["check"], c["healthy"]) for c in host["health"]] == [("verify", "pulse /health", True)]
    assert host["backup_id"] and report["backup_id"] == host["backup_id"]  # the pre-deploy backup
    assert report["plan"]["status"] == "ok"
    assert report["totals"]["hosts"] == 1 and report["totals"]["changed_tasks"] > 0
    assert report["duration"] > 0


def test_rolled_back_run_names_the_failing_assertion():
    report = report_for("deploy_rolled_back")
    [host] = report["hosts"]
    assert host["outcome"] == "rolled_back"
    assert host["failure"]["stage"] == "verify"
    failing = report["failing_health_check"]
    assert failing["host"] == "ci1" and failing["healthy"] is False
    assert (failing["assertion"], failing["reason"]) == ("status in [200]", "got 503")
    assert host["rollback"]["automatic"] and host["rollback"]["healthy"] is True
    assert host["rollback"]["to_version"] == "1.1.0" and host["rollback"]["error"] is None
    assert "status in [200] failed: got 503" in report["rollback_reason"]
    # The health check after the rollback is reported too, as part of the rollback.
    assert [(c["stage"], c["healthy"]) for c in host["health"]] == [("verify", False), ("rollback", True)]
    rollback = next(s for s in host["stages"] if s["name"] == "rollback")
    assert rollback["status"] == "changed" and rollback["message"] == "rolled back to 1.1.0 (healthy)"
    markdown = to_markdown(report)
    assert "status in [200]: got 503" in markdown and "rolled back to 1.1.0" in markdown


def test_refusals_say_why():
    plan = report_for("deploy_refused_version")
    assert plan["hosts"] == [] and plan["plan"]["status"] == "failed"
    assert "shipit_version is required and must be a plain version string" in plan["plan"]["message"]
    artifact = report_for("deploy_missing_artifact")
    assert artifact["hosts"][0]["failure"]["stage"] == "preflight"
    assert "pulse-9.9.9.tar.gz" in artifact["hosts"][0]["failure"]["message"]
    lock = report_for("deploy_lock_held")
    assert "locked by alice" in lock["lock_holder"] and lock["hosts"][0]["failure"]["stage"] == "lock"
    unreachable = report_for("deploy_unreachable")
    assert unreachable["hosts"][0]["failure"]["unreachable"] is True
    assert unreachable["hosts"][0]["stages"][0]["status"] == "unreachable"


def test_manual_rollback_and_history():
    report = report_for("rollback_manual_ok")
    assert report["version"] == report["hosts"][0]["rollback"]["to_version"] == "1.1.0"
    assert report["hosts"][0]["rollback"]["automatic"] is False
    assert [s["name"] for s in report["hosts"][0]["stages"]] == ["lock", "rollback", "unlock"]
    refused = report_for("rollback_refused")["hosts"][0]["failure"]
    assert refused["stage"] == "rollback" and "release 7.7.7 of pulse is not in the ledger" in refused["message"]
    history = report_for("history")["hosts"][0]["history"]
    assert [(r["version"], r["status"]) for r in history[-2:]] == [("1.1.0", "live"), ("1.0.0", "rolled_back")]
    assert any(r["status"] == "failed" and "status in [200]" in r["reason"] for r in history)
    assert report_for("backup")["backup_id"]


def test_the_old_single_play_deploy_reads_the_same():
    """deploy.yml as one play whose rescue ends the host with a `fail`: that fail is the host's verdict, not a
    failure of the rollback, so the rollback stage reads as done."""
    report = report_for("singleplay_rolled_back")
    rollback = next(s for s in report["hosts"][0]["stages"] if s["name"] == "rollback")
    assert rollback["status"] == "changed" and report["exit_code"] == 4


def test_progress_is_one_line_per_host_and_stage_with_elapsed_time(capsys):
    import io

    stream = io.StringIO()
    progress = Progress(stream=stream, interactive=False, started=0.0)
    meta, builder = builder_for("deploy_rolled_back", on_stage_end=progress.stage_end, on_task_start=progress.task_start)
    lines = stream.getvalue().splitlines()
    report = builder.build()
    expected = 1 + sum(1 for h in report["hosts"] for s in h["stages"])  # the plan, then each host stage...
    expected += sum(1 for s in report["hosts"][0]["stages"] if s["name"] == "notify")  # ...notify ran twice
    assert len(lines) == expected
    assert all(re.match(r"^\[\s*\d+\.\d+s\] \S+\s+\S+\s+\S+\s+\d+\.\d+s", line) for line in lines), lines
    verify = next(line for line in lines if " verify " in line)
    assert "FAILED" in verify and "status in [200] failed: got 503" in verify
    assert any("rolled back to 1.1.0 (healthy)" in line for line in lines)


def test_markdown_of_a_critical_run_is_loud():
    markdown = to_markdown(report_for("deploy_rollback_failed"))
    assert markdown.startswith("## 🚨 shipit deploy pulse 1.2.0 → lab: rollback failed (exit 5)")
    assert "FAILED: release" in markdown


def as_agent_calls(events):
    """The recorded health_check loops as the host agent runs them: one task, a step per check, its results
    by step name and the failed step's message (shipit.deploy.agent's return), and no item events."""
    out = []
    for event in events:
        data = event.get("event_data") or {}
        if not data.get("resolved_action", "").endswith("health_check"):
            out.append(event)
            continue
        if event["event"].startswith("runner_item_on"):
            continue
        event = copy.deepcopy(event)
        data = event["event_data"]
        data["resolved_action"] = "shipit.deploy.agent"
        res = data.get("res")
        if isinstance(res, dict) and isinstance(res.get("results"), list):
            items = res.pop("results")
            res["steps"] = [{"name": r["_ansible_item_label"], "module": "health_check", "ok": not r.get("failed")}
                            for r in items]
            res["step_results"] = {r["_ansible_item_label"]: r for r in items}
            # The agent fails with the message of the step that failed.
            res["msg"] = next((r["msg"] for r in items if r.get("failed")), res.get("msg"))
        out.append(event)
    return out


def test_health_checks_run_by_the_host_agent_read_the_same(monkeypatch):
    import shipit_fixtures

    loaded = shipit_fixtures.load
    monkeypatch.setattr(shipit_fixtures, "load", lambda name: (loaded(name)[0], as_agent_calls(loaded(name)[1])))
    report = report_for("deploy_rolled_back")
    [host] = report["hosts"]
    failing = report["failing_health_check"]
    assert (failing["check"], failing["assertion"], failing["reason"]) == ("pulse /health", "status in [200]", "got 503")
    assert [(c["stage"], c["healthy"]) for c in host["health"]] == [("verify", False), ("rollback", True)]
    assert "status in [200] failed: got 503" in report["rollback_reason"]


def _agent_events(path, steps, failed=False, start="2026-12-02T10:00:00+00:00", end="2026-12-02T10:00:01+00:00"):
    """One task of shipit.deploy.agent on host web1: its start and its result, steps as the agent returns them."""
    data = {"host": "web1", "play_pattern": "app", "resolved_action": "shipit.deploy.agent", "role": "systemd_service",
            "task": "Stage the release and install its verified unit", "task_path": path, "task_uuid": path}
    res = {"changed": any(s["changed"] for s in steps), "steps": steps,
           "step_results": {s["name"]: {"changed": s["changed"], "msg": s["msg"]} for s in steps}}
    if failed:
        res.update(failed=True, msg=steps[-1]["msg"])
    return [{"event": "runner_on_start", "created": start, "event_data": dict(data)},
            {"event": "runner_on_failed" if failed else "runner_on_ok", "created": end,
             "event_data": dict(data, start=start, end=end, res=res)}]


def test_a_call_that_stages_and_migrates_shows_both_stages():
    from shipit.report import ReportBuilder

    release = "/repo/roles/systemd_service/tasks/release.yml:7"
    steps = [{"name": "stage", "module": "systemd_release", "ok": True, "changed": True, "seconds": 0.25, "msg": ""},
             {"name": "migrate", "module": "systemd_release", "ok": True, "changed": True, "seconds": 0.5, "msg": ""}]
    builder = ReportBuilder("deploy", "lab", version="1.1.0")
    for event in _agent_events(release, steps):
        builder.feed(event)
    builder.close()
    stages = {s.name: s for s in builder.hosts["web1"].stages.values()}
    assert list(stages) == ["release", "migrate"]
    assert stages["release"].duration == 0.25 and stages["release"].status == "changed"
    assert stages["migrate"].duration == 0.75 and stages["migrate"].status == "changed"

    steps[1].update(ok=False, changed=False, msg="web1: the migration of release 20261202T100000Z failed (exit 3): no")
    builder = ReportBuilder("deploy", "lab", version="1.1.0")
    for event in _agent_events(release, steps, failed=True):
        builder.feed(event)
    builder.close()
    host = builder.hosts["web1"]
    assert [(f.stage, f.message) for f in host.failures] == [("migrate", steps[1]["msg"])]
    assert host.stages["release"].status == "changed" and host.stages["migrate"].status == "failed"
