"""A first run of the collection's playbooks against a user's own inventory prints no warning the user cannot
act on: no ansible.cfg of ours (so no interpreter_python setting), a fresh home and remote_tmp, an inventory
that names no interpreter. The host is this machine (connection local), reached like any inventory host, so
the interpreter is discovered as it is on a remote one."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_history_on_a_first_run_prints_no_warning(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"app": {"hosts": {"target": {
        "ansible_connection": "local", "shipit_app": "pulse", "shipit_ledger_dir": str(tmp_path / "ledger")}}}}}}))
    empty_config = tmp_path / "ansible.cfg"
    empty_config.write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(HOME=str(tmp_path / "home"), ANSIBLE_CONFIG=str(empty_config), ANSIBLE_HOME=str(tmp_path / "ah"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_REMOTE_TMP=str(tmp_path / "remote-tmp"), PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "shipit.deploy.history"],
                          capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "target" in output and "[WARNING]" not in output, output[-3000:]
