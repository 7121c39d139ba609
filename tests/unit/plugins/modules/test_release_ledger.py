"""release_ledger and release_ledger_info run as real collection modules (ansible ad-hoc on localhost)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]


def run_module(module, args, check=False):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", f"shipit.deploy.{module}",
            "-e", f"ansible_python_interpreter={sys.executable}", "-a", json.dumps(args)]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


@pytest.fixture()
def ledger_dir(tmp_path):
    return str(tmp_path / "ledgers")


def test_record_then_read_back(ledger_dir):
    result = run_module("release_ledger", {"app": "pulse", "ledger_dir": ledger_dir, "release_id": "r1",
                                           "version": "1.0.0", "status": "live", "info": {"deployed_by": "ci"}})
    assert result["changed"] and result["release"]["status"] == "live"
    info = run_module("release_ledger_info", {"app": "pulse", "ledger_dir": ledger_dir, "release": "1.0.0"})
    assert info["live"]["release_id"] == "r1"
    assert info["selected"]["deployed_by"] == "ci"
    assert info["changed"] is False


def test_check_mode_predicts_the_change_and_writes_nothing(ledger_dir):
    args = {"app": "pulse", "ledger_dir": ledger_dir, "release_id": "r1", "version": "1.0.0", "status": "live"}
    result = run_module("release_ledger", args, check=True)
    assert result["changed"]
    assert result["diff"]["after"]["status"] == "live"
    assert not os.path.exists(os.path.join(ledger_dir, "pulse", "ledger.json"))
    run_module("release_ledger", args)
    assert run_module("release_ledger", args)["changed"] is False


def test_bad_release_id_fails_with_a_clear_message(ledger_dir):
    result = run_module("release_ledger", {"app": "pulse", "ledger_dir": ledger_dir, "release_id": "../../etc",
                                           "version": "1.0.0", "status": "live"})
    assert result["failed"]
    assert "recording release ../../etc of pulse as live" in result["msg"]
    assert "not a safe name" in result["msg"]


def test_each_write_keeps_only_the_newest_failed_releases(ledger_dir):
    base = {"app": "pulse", "ledger_dir": ledger_dir}
    run_module("release_ledger", dict(base, release_id="r0", version="1.0.0", status="live"))
    for n in range(1, 4):
        run_module("release_ledger", dict(base, release_id=f"r{n}", version=f"1.{n}.0", status="failed",
                                          reason=f"HTTP 50{n}"))
    result = run_module("release_ledger", dict(base, release_id="r4", version="1.4.0", status="failed",
                                               reason="HTTP 504", keep_failed=2))
    assert result["changed"] and result["dropped"] == ["r1", "r2"], result
    info = run_module("release_ledger_info", base)
    assert [(e["release_id"], e["status"]) for e in info["releases"]] == [
        ("r0", "live"), ("r3", "failed"), ("r4", "failed")]


def test_looking_up_a_pruned_release_is_refused_by_name(ledger_dir):
    base = {"app": "pulse", "ledger_dir": ledger_dir}
    run_module("release_ledger", dict(base, release_id="r1", version="1.0.0", status="live"))
    run_module("release_ledger", dict(base, release_id="r2", version="1.1.0", status="live"))
    run_module("release_ledger", dict(base, release_id="r1", status="pruned"))
    info = run_module("release_ledger_info", dict(base, release="1.0.0"))
    assert info["failed"]
    assert "looking up release 1.0.0 of pulse: release r1 (1.0.0) of pulse was pruned" in info["msg"]
    assert "no longer on the host" in info["msg"] and "nothing was changed" in info["msg"]
    assert run_module("release_ledger_info", base)["previous_good"] is None
