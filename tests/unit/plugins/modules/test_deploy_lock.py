"""deploy_lock (module and action plugin) and audit_log run as real collection plugins (ansible ad-hoc on localhost).

Each ad-hoc `ansible` call is its own process that ends right away, like a killed run: a lock it leaves is
broken by the next call as the lock of a dead run. A run that is still going is played by this test process,
which takes the lock directly (hold()).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _lock
from ansible_collections.shipit.deploy.plugins.plugin_utils import _controller

REPO_ROOT = Path(__file__).resolve().parents[4]


def run_module(module, args, check=False):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-m", f"shipit.deploy.{module}", "-e", f"ansible_python_interpreter={sys.executable}",
            "-a", json.dumps(args)]
    if check:
        argv += ["--check"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture()
def base(tmp_path):
    return {"app": "pulse", "lock_dir": str(tmp_path)}


def lock(base, token, **extra):
    args = dict(base, token=token, who=f"user-{token}", version="1.2.0", release_id="20261125T180000Z",
                controller="laptop")
    args.update(extra)
    return args


def hold(base, token, **extra):
    """Take the lock as a run that is still going: this test process, on this controller."""
    holder = dict(token=token, who=f"user-{token}", version="1.2.0", release_id="20261125T180000Z",
                  operation="deploy", controller="laptop",
                  holder_info={"controller_process": _controller.identity(os.getpid())})
    holder.update(extra)
    return _lock.acquire(os.path.join(base["lock_dir"], base["app"]), holder, ttl=600)["lock"]


def audit(base):
    path = os.path.join(base["lock_dir"], "audit.log")
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_take_then_release(base):
    first = run_module("deploy_lock", lock(base, "run1", ci_url="https://ci.example/runs/7"))
    assert first["changed"] and first["acquired"] and first["interrupted"] is None
    assert first["lock"]["ci_url"] == "https://ci.example/runs/7"
    process = first["lock"]["holder_info"]["controller_process"]
    assert process["pid"] and process["start"] and process["boot_id"], "the action plugin names the ansible process"
    released = run_module("deploy_lock", dict(base, token="run1", state="absent"))
    assert released["changed"] and released["released"]
    assert run_module("deploy_lock", dict(base, token="run1", state="absent"))["changed"] is False


def test_the_ledger_is_read_under_the_lock(base):
    os.makedirs(os.path.join(base["lock_dir"], "pulse"))
    with open(os.path.join(base["lock_dir"], "pulse", "ledger.json"), "w", encoding="utf-8") as handle:
        json.dump({"app": "pulse", "releases": [
            {"release_id": "20261125T100000Z", "version": "1.0.0", "status": "good"},
            {"release_id": "20261125T110000Z", "version": "1.1.0", "status": "live"}]}, handle)
    taken = run_module("deploy_lock", lock(base, "run1", read_ledger=True))
    assert taken["acquired"] and taken["ledger"]["live"]["version"] == "1.1.0", taken
    assert taken["ledger"]["previous_good"]["version"] == "1.0.0"
    run_module("deploy_lock", dict(base, token="run1", state="absent"))
    # Held by a run still going: no ledger is returned, the caller stops.
    hold(base, "run2")
    held = run_module("deploy_lock", lock(base, "run3", read_ledger=True, fail_when_held=False))
    assert held["acquired"] is False and "ledger" not in held, held


def test_an_unreadable_ledger_gives_the_lock_back(base):
    os.makedirs(os.path.join(base["lock_dir"], "pulse"))
    with open(os.path.join(base["lock_dir"], "pulse", "ledger.json"), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    refused = run_module("deploy_lock", lock(base, "run1", read_ledger=True))
    assert refused["failed"] and "the lock was given back, nothing was changed" in refused["msg"], refused
    assert "cannot read the ledger" in refused["msg"]
    assert not os.path.exists(os.path.join(base["lock_dir"], "pulse", "deploy.lock"))


def test_a_lock_held_by_a_live_run_stops_the_next(base):
    first = hold(base, "run1")
    second = run_module("deploy_lock", lock(base, "run2", version="1.3.0"))
    assert second["failed"] and not second["acquired"]
    assert f"locked by user-run1 since {first['acquired_at']} (1.2.0)" in second["msg"]
    assert "nothing was changed" in second["msg"] and "playbooks/unlock.yml" in second["msg"]

    soft = run_module("deploy_lock", lock(base, "run2", fail_when_held=False))
    assert not soft.get("failed") and soft["acquired"] is False and soft["holder"].startswith("pulse on ")


def test_the_lock_of_a_run_killed_on_this_controller_is_broken_at_once(base):
    run_module("deploy_lock", lock(base, "killed", ttl=3600))  # its ansible process is gone now
    nxt = run_module("deploy_lock", lock(base, "next"))
    assert nxt["acquired"] and nxt["broken"]["token"] == "killed" and nxt["broken"]["broken_because"] == "dead"
    [entry] = [e for e in audit(base) if e["event"] == "lock_broken"]
    assert entry["result"] == "dead" and entry["stale_lock"]["token"] == "killed"


def test_a_dead_process_of_another_machine_is_not_judged(base):
    elsewhere = dict(_controller.identity(os.getpid()), host="another-controller", pid=999999)
    hold(base, "remote", holder_info={"controller_process": elsewhere})
    assert run_module("deploy_lock", lock(base, "next"))["failed"]


def test_start_and_end_of_the_operation_go_to_the_audit_log(base):
    run_module("deploy_lock", lock(base, "run1"))
    run_module("deploy_lock", lock(base, "run1"))  # renewing is not a new start
    run_module("deploy_lock", dict(base, token="run1", state="absent", result="rolled_back", version="1.2.0",
                                   summary="health check failed", details={"final_version": "1.1.0"}))
    entries = audit(base)
    assert [(e["event"], e["result"]) for e in entries] == [("deploy", "started"), ("deploy", "rolled_back")]
    assert entries[0]["who"] == "user-run1" and entries[0]["controller"] == "laptop"
    assert entries[1]["message"] == "health check failed" and entries[1]["details"] == {"final_version": "1.1.0"}
    assert entries[1]["lock_released"] is True


def test_stage_records_progress_and_release_clears_it(base):
    run_module("deploy_lock", lock(base, "run1"))
    staged = run_module("deploy_lock", lock(base, "run1", stage="switch"))
    assert staged["progress"]["stage"] == "switch" and staged["progress"]["who"] == "user-run1"
    assert run_module("deploy_lock", lock(base, "run1", stage="switch"))["changed"] is False
    run_module("deploy_lock", dict(base, token="run1", state="absent"))
    assert os.listdir(os.path.join(base["lock_dir"], "pulse")) == [".guard"]


def test_killed_run_is_reported_as_interrupted_after_its_lock_expires(base):
    elsewhere = dict(_controller.identity(os.getpid()), host="a-ci-runner")  # not judged here: only its expiry
    hold(base, "dead", holder_info={"controller_process": elsewhere})
    directory = os.path.join(base["lock_dir"], "pulse")
    _lock.write_progress(directory, "dead", {"operation": "deploy", "stage": "switch", "version": "1.2.0"}, ttl=1)
    time.sleep(1.2)
    nxt = run_module("deploy_lock", lock(base, "next"))
    assert nxt["acquired"] and nxt["broken"]["token"] == "dead"
    assert (nxt["interrupted"]["stage"], nxt["interrupted"]["token"]) == ("switch", "dead")
    refused = run_module("deploy_lock", lock(base, "next", stage="release"))
    assert refused["failed"] and "recover it first" in refused["msg"]
    [entry] = [e for e in audit(base) if e["event"] != "deploy"]
    assert (entry["event"], entry["result"], entry["stale_lock"]["token"]) == ("lock_broken", "stale", "dead")


def test_forced_unlock_is_audited_and_keeps_the_interrupted_record(base):
    run_module("deploy_lock", lock(base, "run1"))
    run_module("deploy_lock", lock(base, "run1", stage="migrate"))
    forced = run_module("deploy_lock", dict(base, state="absent", force=True, who="alice", reason="CI job cancelled"))
    assert forced["changed"] and forced["released"] and forced["interrupted"]["stage"] == "migrate"
    [entry] = [e for e in audit(base) if e["event"] == "unlock"]
    assert (entry["event"], entry["result"], entry["who"], entry["reason"]) == (
        "unlock", "forced", "alice", "CI job cancelled")
    assert entry["released_lock"]["who"] == "user-run1"


def test_stage_needs_the_lock_and_never_takes_it(base):
    refused = run_module("deploy_lock", lock(base, "run1", stage="release"))
    assert refused["failed"] and "no longer held" in refused["msg"]
    assert not os.path.exists(os.path.join(base["lock_dir"], "pulse", "deploy.lock"))
    run_module("deploy_lock", lock(base, "run2"))
    taken = run_module("deploy_lock", lock(base, "run1", stage="release"))
    assert taken["failed"] and "taken over" in taken["msg"] and "locked by user-run2" in taken["msg"]


def test_query_reads_and_changes_nothing(base):
    empty = run_module("deploy_lock", dict(base, state="query"))
    assert empty["changed"] is False and empty["lock"] is None and empty["interrupted"] is None
    run_module("deploy_lock", lock(base, "run1"))
    run_module("deploy_lock", lock(base, "run1", stage="switch"))
    seen = run_module("deploy_lock", dict(base, state="query"))
    assert seen["changed"] is False and seen["lock"]["token"] == "run1"
    assert "locked by user-run1" in seen["holder"] and "interrupted at stage switch" in seen["progress_text"]


def test_release_of_another_runs_lock_is_refused_with_a_warning(base):
    run_module("deploy_lock", lock(base, "run1"))
    other = run_module("deploy_lock", dict(base, token="run2", state="absent"))
    assert other["changed"] is False and other["released"] is False
    assert "not this run's" in " ".join(other.get("warnings", []))


def test_check_mode_predicts_and_writes_nothing(base):
    predicted = run_module("deploy_lock", lock(base, "run1", stage="release"), check=True)
    assert predicted["changed"] and predicted["acquired"]
    assert not os.path.exists(os.path.join(base["lock_dir"], "pulse"))
    hold(base, "run1")
    held = run_module("deploy_lock", lock(base, "run2"), check=True)
    assert held["failed"] and "locked by user-run1" in held["msg"]


@pytest.mark.parametrize("args, message", [
    ({"app": "../etc"}, "not a safe name"),
    ({"ttl": 0}, "ttl must be at least 1 second"),
    ({"wait": -1}, "wait must not be negative"),
])
def test_bad_inputs_fail_clearly(base, args, message):
    result = run_module("deploy_lock", lock(base, "run1", **args))
    assert result["failed"] and message in result["msg"]
    assert result["msg"].startswith("taking the deploy lock of ")


def test_release_needs_a_token_or_force(base):
    result = run_module("deploy_lock", dict(base, state="absent"))
    assert result["failed"] and "give the token" in result["msg"]


def test_audit_log_appends_and_reads(base):
    path = os.path.join(base["lock_dir"], "audit.log")
    predicted = run_module("audit_log", {"path": path, "event": "deploy", "result": "started"}, check=True)
    assert predicted["changed"] and not os.path.exists(path)
    for result in ("started", "succeeded"):
        out = run_module("audit_log", {"path": path, "event": "deploy", "result": result, "app": "pulse", "who": "ci",
                                       "version": "1.2.0", "details": {"hosts": ["web1"]}})
        assert out["changed"] and out["entry"]["time"]
    run_module("audit_log", {"path": path, "event": "rollback", "result": "succeeded", "app": "other"})
    read = run_module("audit_log", {"path": path, "state": "read", "app": "pulse", "last": 5})
    assert read["changed"] is False
    assert [(e["event"], e["result"]) for e in read["entries"]] == [("deploy", "started"), ("deploy", "succeeded")]
    assert read["entries"][0]["details"] == {"hosts": ["web1"]}


def test_audit_log_needs_event_and_result(base):
    result = run_module("audit_log", {"path": os.path.join(base["lock_dir"], "audit.log"), "event": "deploy"})
    assert result["failed"] and "result" in result["msg"]
