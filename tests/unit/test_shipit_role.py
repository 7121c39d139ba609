"""The shipit role holds the inputs of the playbooks: its argument specs match its defaults, and a wrong type is
refused on the controller, naming the input, before any host is contacted."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROLE = REPO / "roles" / "shipit"


def test_every_default_is_specified_with_the_same_value():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    # shipit_artifact_sha256 may template shipit_version, which only a deploy sets: documented, not validated.
    unspecified = set(defaults) - set(options) - {"shipit_artifact_sha256", "shipit_notify_webhooks"}
    assert not unspecified, f"defaults without a spec: {sorted(unspecified)}"
    for name, value in defaults.items():
        if name in options:
            assert options[name].get("default") == value, name
    for name, option in options.items():
        assert option.get("type") and option.get("description"), name
        if "default" in option:
            assert defaults.get(name) == option["default"], f"{name}: the spec's default is not in defaults/main.yml"


def test_a_wrong_type_is_refused_before_any_host_is_contacted():
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventories/staging", "playbooks/rollback.yml",
                           "-e", "shipit_lock_ttl=soon"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert "shipit_lock_ttl" in proc.stdout and "unable to convert to int" in proc.stdout, proc.stdout
    assert "UNREACHABLE" not in proc.stdout, "refused before any host was contacted"
