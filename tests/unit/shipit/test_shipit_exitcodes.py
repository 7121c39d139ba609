"""Exit codes, derived from the runner's events of real runs against the lab (events/*.jsonl)."""

import copy
from types import SimpleNamespace

import pytest
from shipit_fixtures import RECORDINGS, builder_for, load, report_for

from shipit.exitcodes import DESCRIPTIONS, OUTCOMES, ExitCode, host_exit_code, run_exit_code
from shipit.report import Failure, ReportBuilder


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_recorded_run_gets_its_exit_code(name):
    expected, what = RECORDINGS[name]
    meta, builder = builder_for(name)
    assert builder.exit_code(meta["runner_status"]) == expected, what


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_exit_code_does_not_read_the_text_output(name):
    """The same events without any stdout give the same exit code: nothing is parsed from Ansible's text."""
    meta, events = load(name)
    expected, _ = RECORDINGS[name]
    from shipit.report import ReportBuilder

    builder = ReportBuilder(meta["operation"], meta["env"], version=meta["version"])
    for event in events:
        builder.feed({k: v for k, v in event.items() if k != "stdout"})
    assert builder.exit_code(meta["runner_status"]) == expected


def test_the_rollback_failed_run_is_critical_because_a_rollback_task_failed():
    report = report_for("deploy_rollback_failed")
    [host] = report["hosts"]
    assert host["exit_code"] == 5 and host["outcome"] == "rollback_failed"
    assert "is missing" in host["rollback"]["error"]  # the kind role's activate refused the missing release
    assert host["failure"]["stage"] == "verify"  # the deploy failed first, then its rollback


def test_outcome_names_and_descriptions_cover_every_code():
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5]
    assert set(OUTCOMES) == set(ExitCode) == set(DESCRIPTIONS)


def _host(*failures, rollback_ran=False):
    return SimpleNamespace(failures=list(failures), rollback_ran=rollback_ran)


def _failure(stage, in_role=False, artifact=False, changed_before=False):
    return Failure(stage=stage, task="t", message="m", in_role=in_role, artifact_check=artifact,
                   changed_before=changed_before)


@pytest.mark.parametrize("operation, host, expected", [
    ("deploy", _host(), ExitCode.OK),
    ("deploy", _host(_failure("plan")), ExitCode.REFUSED),
    ("deploy", _host(_failure("preflight")), ExitCode.REFUSED),
    ("deploy", _host(_failure("lock")), ExitCode.REFUSED),
    ("deploy", _host(_failure("preflight", artifact=True)), ExitCode.ARTIFACT),
    # The recovery of an interrupted run changed the host, then the lock stage stopped: not a refusal.
    ("deploy", _host(_failure("lock", changed_before=True)), ExitCode.FAILED),
    ("rollback", _host(_failure("lock", changed_before=True)), ExitCode.FAILED),
    ("deploy", _host(_failure("verify", in_role=True, changed_before=True)), ExitCode.FAILED),
    ("deploy", _host(_failure("migrate", in_role=True, changed_before=True), rollback_ran=True), ExitCode.ROLLED_BACK),
    ("deploy", _host(_failure("verify", in_role=True), _failure("rollback", in_role=True), rollback_ran=True),
     ExitCode.ROLLBACK_FAILED),
    # A healthy host rolled back with the fleet after another host failed.
    ("deploy", _host(rollback_ran=True), ExitCode.ROLLED_BACK),
    ("deploy", _host(_failure("verify"), _failure("fleet_rollback", in_role=True), rollback_ran=True),
     ExitCode.ROLLBACK_FAILED),
    # shipit rollback: a refusal of the rollback role changes nothing; a failure after the switch is critical.
    ("rollback", _host(_failure("rollback", in_role=True)), ExitCode.REFUSED),
    ("rollback", _host(_failure("rollback", in_role=True, changed_before=True), rollback_ran=True),
     ExitCode.ROLLBACK_FAILED),
    ("backup", _host(_failure("backup", in_role=True)), ExitCode.REFUSED),
    ("backup", _host(_failure("backup", in_role=True, changed_before=True)), ExitCode.FAILED),
])
def test_host_exit_code(operation, host, expected):
    assert host_exit_code(operation, host) == expected


@pytest.mark.parametrize("codes, changed, runner_failed, expected", [
    ([], 0, False, ExitCode.OK),
    ([ExitCode.OK, ExitCode.OK], 2, False, ExitCode.OK),
    ([ExitCode.OK, ExitCode.ROLLED_BACK], 2, False, ExitCode.ROLLED_BACK),
    ([ExitCode.ROLLED_BACK, ExitCode.FAILED], 2, False, ExitCode.FAILED),
    ([ExitCode.FAILED, ExitCode.ROLLBACK_FAILED], 2, False, ExitCode.ROLLBACK_FAILED),
    ([ExitCode.REFUSED, ExitCode.ARTIFACT], 0, False, ExitCode.ARTIFACT),
    # One host refused while another changed: not "refused before any change".
    ([ExitCode.REFUSED, ExitCode.OK], 1, False, ExitCode.FAILED),
    # The runner failed without a failed task (syntax error, bad inventory, timeout).
    ([], 0, True, ExitCode.REFUSED),
    ([ExitCode.OK], 1, True, ExitCode.FAILED),
])
def test_run_exit_code(codes, changed, runner_failed, expected):
    assert run_exit_code(codes, changed_hosts=changed, runner_failed=runner_failed) == expected


def test_no_host_matched_is_a_refusal():
    """A --limit that matches nothing makes ansible-playbook succeed: shipit must not say "deployed"."""
    from shipit.report import ReportBuilder

    builder = ReportBuilder("deploy", "lab", version="1.0.0")
    plan_ok = [e for e in load("deploy_upgrade_ok")[1]
               if (e.get("event_data") or {}).get("play_pattern") == "localhost" or e["event"] == "playbook_on_stats"]
    for event in plan_ok:
        builder.feed(event)
    report = builder.build(runner_status="successful", rc=0)
    assert report["exit_code"] == 1 and "no host matched" in report["summary"]


def _with_outcomes(name, outcomes):
    """A recorded run whose stats carry the playbook's outcomes (set_stats shipit_outcomes of stages/report.yml),
    as ansible-runner gives them (artifact_data of playbook_on_stats)."""
    meta, events = load(name)
    events = copy.deepcopy(events)
    stats = next(e for e in events if e.get("event") == "playbook_on_stats")
    stats["event_data"]["artifact_data"] = {"shipit_outcomes": outcomes}
    builder = ReportBuilder(meta["operation"], meta["env"], version=meta["version"], check=meta["check"],
                            limit=meta["limit"])
    for event in events:
        builder.feed(event)
    builder.close()
    return builder, meta


def test_the_verdict_is_the_playbooks_own_when_the_run_reached_its_report():
    builder, meta = _with_outcomes("deploy_rolled_back", {"ci1": "rolled_back"})
    assert builder.exit_code(meta["runner_status"]) == ExitCode.ROLLED_BACK
    # The playbook's word wins over what the events suggest: a rollback it says failed is critical.
    builder, meta = _with_outcomes("deploy_rolled_back", {"ci1": "rollback_failed"})
    assert builder.exit_code(meta["runner_status"]) == ExitCode.ROLLBACK_FAILED
    builder, meta = _with_outcomes("deploy_upgrade_ok", {"ci1": "deployed"})
    assert builder.exit_code(meta["runner_status"]) == ExitCode.OK
    # An outcome that is not final (the run was cut short) leaves the verdict to the events.
    builder, meta = _with_outcomes("deploy_rolled_back", {"ci1": "pending"})
    assert builder.exit_code(meta["runner_status"]) == ExitCode.ROLLED_BACK
