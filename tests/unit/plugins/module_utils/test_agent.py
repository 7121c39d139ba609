"""The host agent: a plan of steps in one python start (module_utils/_agent.py), and its zipapp run for real
by a separate python3, as the host runs it (plugins/action/agent.py builds it)."""

import json
import subprocess
import sys

import pytest

from ansible_collections.shipit.deploy.plugins.action.agent import build_zipapp
from ansible_collections.shipit.deploy.plugins.module_utils import _agent


def steps_that(log):
    def good(args, check_mode):
        log.append((args["n"], check_mode))
        return {"changed": True, "msg": f"step {args['n']}", "n": args["n"]}

    def bad(args, check_mode):
        log.append((args["n"], check_mode))
        raise _agent.StepError(f"step {args['n']} failed")
    return {"good": good, "bad": bad}


def test_a_failed_step_stops_the_plan_but_always_steps_still_run():
    log = []
    answer = _agent.run_plan({"steps": [
        {"name": "one", "step": "good", "args": {"n": 1}},
        {"name": "two", "step": "bad", "args": {"n": 2}},
        {"name": "three", "step": "good", "args": {"n": 3}},
        {"name": "four", "step": "good", "args": {"n": 4}, "always": True},
    ]}, steps=steps_that(log))
    assert log == [(1, False), (2, False), (4, False)]
    assert (answer["ok"], answer["failed"], answer["changed"]) == (False, "two", True)
    assert [(s["name"], s["ok"], s["msg"]) for s in answer["steps"]] == [
        ("one", True, "step 1"), ("two", False, "step 2 failed"),
        ("three", None, "skipped: an earlier step failed"), ("four", True, "step 4")]
    assert answer["steps"][0]["result"] == {"n": 1} and all(s["seconds"] >= 0 for s in answer["steps"])


def test_check_mode_reaches_every_step_and_unknown_steps_are_refused_before_any_runs():
    log = []
    assert _agent.run_plan({"check_mode": True, "steps": [{"step": "good", "args": {"n": 1}}]},
                           steps=steps_that(log))["ok"]
    assert log == [(1, True)]
    with pytest.raises(_agent.StepError, match="does not know: nope; nothing was run"):
        _agent.run_plan({"steps": [{"step": "good", "args": {"n": 2}}, {"step": "nope"}]}, steps=steps_that(log))
    assert log == [(1, True)]


def test_a_missing_argument_fails_its_step_by_name():
    answer = _agent.run_plan({"steps": [{"name": "lock", "step": "lock", "args": {"app": "pulse"}}]})
    assert answer["failed"] == "lock" and answer["steps"][0]["msg"] == "missing argument 'token'"


def test_the_zipapp_is_the_same_bytes_for_the_same_code():
    assert build_zipapp() == build_zipapp()


def run_agent(pyz, plan):
    proc = subprocess.run([sys.executable, "-I", str(pyz)], input=json.dumps(plan), capture_output=True, text=True,
                          timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_the_zipapp_locks_records_and_unlocks_in_one_python_start(tmp_path):
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    common = {"app": "pulse", "lock_dir": str(tmp_path / "shipit"), "token": "run-1"}
    rc, answer = run_agent(pyz, {"steps": [
        {"name": "lock", "step": "lock", "args": dict(common, holder={"who": "ci"})},
        {"name": "progress", "step": "progress", "args": dict(common, record={"stage": "release", "version": "1.1.0"})},
    ]})
    assert rc == 0 and answer["ok"], answer
    assert answer["steps"][0]["result"]["ledger"] == {"live": None, "previous_good": None}
    assert json.loads((tmp_path / "shipit/pulse/in_progress.json").read_text())["stage"] == "release"
    # Another run is refused while the lock is held, naming the holder; its always step still runs.
    rc, answer = run_agent(pyz, {"steps": [
        {"name": "lock", "step": "lock", "args": dict(common, token="run-2")},
        {"name": "unlock", "step": "unlock", "args": dict(common, token="run-2"), "always": True},
    ]})
    assert rc == 1 and answer["failed"] == "lock" and "the deploy lock is held" in answer["steps"][0]["msg"]
    assert answer["steps"][1]["msg"] == "not locked by this run"
    rc, answer = run_agent(pyz, {"steps": [{"name": "unlock", "step": "unlock", "args": common}]})
    assert rc == 0 and answer["changed"] and not (tmp_path / "shipit/pulse/deploy.lock").exists()


def test_the_zipapp_records_a_release_and_audits_it_honouring_check_mode(tmp_path):
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    ledger_dir, audit = str(tmp_path / "shipit"), str(tmp_path / "shipit" / "audit.log")
    (tmp_path / "shipit").mkdir()
    plan = {"steps": [
        {"name": "record", "step": "record", "args": {"app": "pulse", "ledger_dir": ledger_dir, "release_id": "20261202T060000Z",
                                                      "version": "1.1.0", "status": "live", "info": {"slot": "blue"}}},
        {"name": "audit", "step": "audit", "args": {"path": audit, "event": "deploy", "result": "succeeded",
                                                    "fields": {"app": "pulse", "version": "1.1.0"}}},
    ]}
    rc, answer = run_agent(pyz, dict(plan, check_mode=True))
    assert rc == 0 and answer["changed"] and not (tmp_path / "shipit/pulse").exists() and not (tmp_path / "shipit/audit.log").exists()
    rc, answer = run_agent(pyz, plan)
    assert rc == 0 and answer["steps"][0]["result"]["live"]["slot"] == "blue", answer
    [line] = (tmp_path / "shipit/audit.log").read_text().splitlines()
    assert json.loads(line)["event"] == "deploy"
