"""The shipit command without Ansible: arguments, discovery, secrets, artifacts, the run driven by recorded events."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from shipit_fixtures import REPO, load

from shipit import cli, runner
from shipit.runner import ShipitError

SHIPIT = [sys.executable, "-m", "shipit"]


def run_cli(*args, env=None, cwd=REPO):
    return subprocess.run([*SHIPIT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_help_lists_the_exit_codes():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for line in ("0  deployed and healthy", "1  refused before any change", "4  failed and rolled back (healthy)",
                 "5  CRITICAL: the rollback failed too"):
        assert line in proc.stdout


@pytest.mark.parametrize("args", [[], ["deploy"], ["deploy", "--env", "lab"], ["frobnicate", "--env", "lab"],
                                  ["deploy", "--env", "lab", "--version", "1", "--no-such-flag"]])
def test_bad_usage_is_refused_with_exit_1(args):
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "error" in proc.stderr


def test_unknown_environment_and_bad_names_are_refused_before_anything_runs(tmp_path):
    proc = run_cli("deploy", "--env", "nowhere", "--version", "1.0.0", "--artifacts-dir", str(tmp_path / "run"))
    assert proc.returncode == 1 and "no inventory for environment 'nowhere'" in proc.stderr
    assert not (tmp_path / "run").exists()
    proc = run_cli("deploy", "--env", "../etc", "--version", "1.0.0")
    assert proc.returncode == 1 and "bad environment name" in proc.stderr


def test_a_missing_playbook_is_named(tmp_path):
    project = tmp_path / "collection"
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks" / "deploy.yml").write_text("---\n")
    (project / "galaxy.yml").write_text("namespace: shipit\nname: deploy\n")
    with pytest.raises(ShipitError, match=r"shipit restore runs playbooks/restore.yml, which this version"):
        runner.find_playbook("restore", runner.find_project(str(project)))
    proc = run_cli("restore", "--env", "lab", "--project-dir", str(project))
    assert proc.returncode == 1 and "playbooks/restore.yml" in proc.stderr


def test_project_and_inventory_of_a_checkout():
    assert runner.find_project() == REPO
    assert runner.find_inventory("lab", REPO) == REPO / "inventories" / "lab"


def test_extra_vars_of_each_operation(monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    parser = cli.build_parser()
    deploy = cli.operation_vars(parser.parse_args(["deploy", "--env", "lab", "--version", "1.2.0", "-e", "x=1"]))
    assert deploy == {"x": "1", "shipit_version": "1.2.0", "shipit_git_sha": "abc123", "shipit_deployed_by": "octocat"}
    rollback = cli.operation_vars(parser.parse_args(["rollback", "--env", "lab", "--to", "1.0.0", "--with-data"]))
    assert rollback == {"shipit_rollback_to": "1.0.0", "shipit_rollback_restore_db": True}
    restore = cli.operation_vars(parser.parse_args(["restore", "--env", "lab", "--backup", "latest", "--test"]))
    assert restore == {"shipit_backup": "latest", "shipit_restore_test": True}
    maintenance = cli.operation_vars(parser.parse_args(["maintenance", "--env", "lab", "on"]))
    assert maintenance == {"shipit_maintenance": "on"}
    with pytest.raises(SystemExit):
        parser.parse_args(["maintenance", "--env", "lab", "maybe"])
    with pytest.raises(ShipitError, match="KEY=VALUE"):
        cli.operation_vars(parser.parse_args(["history", "--env", "lab", "-e", "novalue"]))


def test_a_limit_keeps_the_controllers_plan_play(tmp_path):
    assert cli._limit(REPO / "playbooks" / "deploy.yml", "ci1") == "ci1,localhost"
    assert cli._limit(REPO / "playbooks" / "deploy.yml", None) is None
    hosts_only = tmp_path / "history.yml"
    hosts_only.write_text("---\n- name: Show\n  hosts: app\n  tasks: []\n")
    assert cli._limit(hosts_only, "web1") == "web1"


def test_vault_password_from_the_environment_goes_to_a_private_file_that_is_removed(monkeypatch, tmp_path):
    monkeypatch.setenv("SHIPIT_VAULT_PASSWORD", "s3cret-canary")
    with runner.vault_password_file() as path:
        assert path.read_text() == "s3cret-canary\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert "SHIPIT_VAULT_PASSWORD" not in os.environ  # no child process, no artifact sees it
        assert not str(path).startswith(str(tmp_path))
    assert not path.exists() and not path.parent.exists()


def test_vault_password_file_given_is_used_as_it_is(tmp_path):
    given = tmp_path / "vault-pass"
    given.write_text("x\n")
    with runner.vault_password_file(str(given)) as path:
        assert path == given
    assert given.exists()
    with pytest.raises(ShipitError, match="does not exist"):
        with runner.vault_password_file(str(tmp_path / "missing")):
            pass


def test_the_command_artifact_keeps_no_secret_value(tmp_path):
    command = tmp_path / "command"
    command.write_text(json.dumps({"command": ["ansible-playbook"], "env": {
        "PATH": "/usr/bin", "GITHUB_TOKEN": "ghp_canary", "AWS_SECRET_ACCESS_KEY": "aws_canary",
        "MY_DB_PASSWORD": "pw_canary", "ANSIBLE_HOST_KEY_CHECKING": "False"}}))
    runner.redact_command_artifact(tmp_path)
    env = json.loads(command.read_text())["env"]
    assert env == {"PATH": "/usr/bin", "GITHUB_TOKEN": "********", "AWS_SECRET_ACCESS_KEY": "********",
                   "MY_DB_PASSWORD": "********", "ANSIBLE_HOST_KEY_CHECKING": "False"}
    assert stat.S_IMODE(command.stat().st_mode) == 0o600


def test_every_run_gets_its_own_directory(tmp_path):
    first = runner.new_run_dir("deploy", "lab", base=tmp_path)
    second = runner.new_run_dir("deploy", "lab", base=tmp_path)
    assert first != second and first.name.endswith("-deploy-lab")
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    (first / "x").write_text("")
    with pytest.raises(ShipitError, match="not empty"):
        runner.new_run_dir("deploy", "lab", explicit=first)


def _replay(monkeypatch, name, calls):
    """run_playbook replaced by a replay of a recorded run's events (and its artifacts)."""
    meta, events = load(name)

    def fake_run_playbook(**kwargs):
        calls.append(kwargs)
        artifact_dir = Path(kwargs["run_dir"]) / "artifacts" / kwargs["ident"]
        (artifact_dir / "job_events").mkdir(parents=True)
        for event in events:
            kwargs["event_handler"](event)
            (artifact_dir / "job_events" / f"{event['counter']}-x.json").write_text(json.dumps(event))
        rc = 0 if meta["runner_status"] == "successful" else 2
        (artifact_dir / "status").write_text(meta["runner_status"])
        (artifact_dir / "rc").write_text(str(rc))
        return SimpleNamespace(status=meta["runner_status"], rc=rc)

    monkeypatch.setattr(cli, "run_playbook", fake_run_playbook)
    return meta


@pytest.mark.parametrize("name, expected", [("deploy_upgrade_ok", 0), ("deploy_rolled_back", 4),
                                            ("deploy_missing_artifact", 2)])
def test_a_run_writes_its_report_and_exits_with_its_code(monkeypatch, tmp_path, capsys, name, expected):
    calls = []
    meta = _replay(monkeypatch, name, calls)
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    run_dir = tmp_path / "run"
    code = cli.main(["deploy", "--env", "lab", "--version", meta["version"], "--limit", "ci1",
                     "--artifacts-dir", str(run_dir), "--plain"])
    assert code == expected
    [call] = calls
    assert call["limit"] == "ci1,localhost" and call["inventory"] == REPO / "inventories" / "lab"
    assert call["playbook"] == REPO / "playbooks" / "deploy.yml" and call["project"] == REPO
    assert call["extravars"]["shipit_version"] == meta["version"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["exit_code"] == expected and report["runner"]["run_dir"] == str(run_dir)
    assert (run_dir / "report.md").read_text().startswith("## ")
    assert json.loads((run_dir / "shipit-run.json").read_text())["operation"] == "deploy"
    assert f"exit-code={expected}\n" in outputs.read_text()
    out = capsys.readouterr().out
    assert f"(exit {expected})" in out and " preflight " in out


def test_the_report_can_be_rebuilt_from_the_kept_artifacts(monkeypatch, tmp_path):
    _replay(monkeypatch, "deploy_rolled_back", [])
    run_dir = tmp_path / "run"
    assert cli.main(["deploy", "--env", "lab", "--version", "1.2.0", "--artifacts-dir", str(run_dir), "--plain"]) == 4
    first = json.loads((run_dir / "report.json").read_text())
    (run_dir / "report.json").unlink()
    assert cli.main(["report", str(run_dir)]) == 4
    again = json.loads((run_dir / "report.json").read_text())
    for key in ("exit_code", "release_id", "hosts", "failing_health_check", "rollback_reason", "totals"):
        assert again[key] == first[key], key


def _history_run(monkeypatch, tmp_path, *extra):
    _replay(monkeypatch, "history", [])
    return cli.main(["history", "--env", "lab", "--limit", "ci1", "--artifacts-dir", str(tmp_path / "run"),
                     "--plain", *extra])


def test_history_json_prints_only_the_ledger_of_every_host(monkeypatch, tmp_path, capsys):
    assert _history_run(monkeypatch, tmp_path, "--json") == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # stdout is the document alone: no table, no progress lines
    assert (document["env"], document["exit_code"], list(document["hosts"])) == ("lab", 0, ["ci1"])
    host = document["hosts"]["ci1"]
    assert host["lock"] == {"holder": None, "in_progress": None} and host["error"] is None
    failed = host["releases"][0]
    assert list(failed) == ["release_id", "version", "status", "pruned_from", "slot", "when", "deployed_by", "git_sha",
                            "backup_id", "reason"]
    assert failed["status"] == "failed" and failed["git_sha"] == "a9e3d8ca512f58a47d2ed470d031972de78148e4"
    assert failed["reason"].endswith('"reason": "deliberately broken build"})')  # in full
    assert [(r["version"], r["status"]) for r in host["releases"][-2:]] == [("1.1.0", "live"), ("1.0.0", "rolled_back")]
    assert "(exit 0)" in captured.err  # the progress went to stderr


def test_history_prints_the_collections_table(monkeypatch, tmp_path, capsys):
    from ansible_collections.shipit.deploy.plugins.filter.history import history_table

    assert _history_run(monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    releases = next(json.loads(line)["event_data"]["res"]["releases"] for line in
                    (REPO / "tests/unit/shipit/events/history.jsonl").read_text().splitlines()[1:]
                    if "releases" in line)
    # The same layout as playbooks/history.yml prints: one row per release, the reason whole on its own line.
    assert "\nci1\n" + history_table(releases) + "\n" in out
    assert "    reason: health check http GET http://127.0.0.1:8080/health failed after 20 attempts" in out
    assert not out.lstrip().startswith("{")
