"""The benchmarks run end to end in smoke mode (1 repetition, 1 host, tiny databases) on the bench's own
hosts (bench/inventory), and write every figure: no timing is asserted, only that each was measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab


def test_bench_smoke_writes_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*-smoke.json")
    result = json.loads(result_file.read_text())
    names = set(result["figures"])
    expected = {"floor: ansible-playbook, 1 task", "systemd deploy, new release", "systemd idempotent re-run",
                "systemd manual rollback", "systemd automatic rollback", "Compose deploy, new release",
                "Compose idempotent re-run", "Compose manual rollback", "fleet deploy, 1 hosts",
                "tuning: pipelining off (1-task play)", "tuning: ControlPersist off (1-task play)",
                "tuning: all facts (1-task play)", "tuning: min facts (1-task play)", "tuning: forks 1 (1-host 1-task play)"}
    assert expected <= names, expected - names
    assert {"sqlite backup, smallest", "sqlite restore, smallest", "postgresql backup, smallest",
            "postgresql restore, smallest"} <= names, names
    assert result["complete"]
    # Mitogen is measured, or why not is written down.
    assert "tuning: Mitogen (1-task play)" in names or any("Mitogen" in note for note in result["notes"])
    for name, figure in result["figures"].items():
        assert figure["shipit"] and figure["bare"], name
        assert all(x > 0 for x in figure["shipit"] + figure["bare"]), (name, figure)
        assert figure["ratio"] > 0, name
    assert result["breakdown"]["tasks_on_host"] > 0
    assert all(stage["seconds"] >= 0 for stage in result["breakdown"]["stages"])
    assert (tmp_path / result_file.name.replace(".json", ".md")).read_text().count("|") > 20
