"""The benchmarks run end to end in smoke mode (1 repetition, 1 host, tiny databases) on the bench's own
hosts (bench/inventory), and write every figure: no timing is asserted, only that each was measured.

The Compose section is left out of the smoke run: it is the same measuring code (Bench.paired) around a
Compose deploy, which costs two minutes here and is tested for itself by the compose_stack scenario. The
tables (summaries, ratios, derived targets) are checked without the lab on a committed full run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FULL_RUN = REPO / "bench" / "results" / "2026-12-02.json"


def test_render_of_a_committed_full_run_gives_its_committed_tables(tmp_path):
    copy = tmp_path / FULL_RUN.name
    shutil.copy(FULL_RUN, copy)
    proc = subprocess.run([sys.executable, "bench/run.py", "--render", str(copy)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert copy.with_suffix(".md").read_text() == FULL_RUN.with_suffix(".md").read_text()
    assert json.loads(copy.read_text())["derived"] == json.loads(FULL_RUN.read_text())["derived"]


@pytest.mark.lab
def test_bench_smoke_writes_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--skip", "compose", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*-smoke.json")
    result = json.loads(result_file.read_text())
    names = set(result["figures"])
    expected = {"floor: ansible-playbook, 1 task", "systemd deploy, new release", "systemd idempotent re-run",
                "systemd manual rollback", "systemd automatic rollback", "fleet deploy, 1 hosts",
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
