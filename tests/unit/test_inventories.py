"""The environment inventories: config kept apart, secrets only in ansible-vault, production asks for a
confirmation and staging/production refuse to run without their vault, before any host is contacted."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENVIRONMENTS = ("development", "staging", "production")
DEV_PASSWORD = REPO / "inventories" / "development" / "vault-password.txt"


def run(*argv):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)


def group_vars(environment, *extra):
    proc = run("ansible-inventory", "-i", f"inventories/{environment}", "--list", *extra)
    assert proc.returncode == 0, proc.stdout
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    host = data["app"]["hosts"][0]
    return data["_meta"]["hostvars"][host]


def test_each_environment_has_its_own_configuration():
    seen = {env: group_vars(env, "--vault-password-file", str(DEV_PASSWORD)) if env == "development" else group_vars(env)
            for env in ENVIRONMENTS}
    assert [seen[env]["shipit_environment"] for env in ENVIRONMENTS] == list(ENVIRONMENTS)
    databases = {env: seen[env]["systemd_service_env"]["PULSE_DATABASE_URL"] for env in ENVIRONMENTS}
    assert len(set(databases.values())) == 3, databases
    assert "pulse_staging" in databases["staging"] and "pulse_production" in databases["production"]
    assert len({seen[env]["shipit_notify_name"] for env in ENVIRONMENTS}) == 3
    assert [seen[env]["shipit_confirm_required"] for env in ENVIRONMENTS] == [False, False, True]


def test_secrets_are_only_in_vault():
    for path in (p for env in ENVIRONMENTS for p in (REPO / "inventories" / env).rglob("*.yml")):
        text = path.read_text()
        for match in re.finditer(r"^\s*(vault_\w+):(.*)$", text, re.M):
            assert match.group(2).strip() == "!vault |", f"{path}: {match.group(1)} is not vault-encrypted"
        # No password, token or key in clear: they are references to vault_* variables.
        for match in re.finditer(r"^\s*\w*(password|token|secret|_key)\w*:\s*(\S.*)$", text, re.M | re.I):
            assert "vault_" in match.group(2) or match.group(2).startswith("!vault"), f"{path}: {match.group(0)}"


def test_development_vault_opens_with_its_documented_throwaway_password():
    hostvars = group_vars("development", "--vault-password-file", str(DEV_PASSWORD))
    assert hostvars["vault_pulse_secret_key"]["__ansible_vault"].startswith("$ANSIBLE_VAULT")
    proc = run("ansible", "-i", "inventories/development", "dev1", "-m", "ansible.builtin.debug",
               "-a", "msg={{ vault_pulse_secret_key }}", "--vault-password-file", str(DEV_PASSWORD), "-c", "local")
    assert "dev-secret-key-not-for-real-use" in proc.stdout, proc.stdout


def test_production_refuses_without_confirmation_before_contacting_a_host():
    proc = run("ansible-playbook", "-i", "inventories/production", "playbooks/deploy.yml", "-e", "shipit_version=1.0.0")
    assert proc.returncode != 0
    assert "production needs an explicit confirmation: add -e shipit_confirm=production" in proc.stdout, proc.stdout
    assert "prod.example.internal" not in proc.stdout.split("PLAY RECAP")[0].split("TASK [Check the environment")[0]
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout), proc.stdout


@pytest.mark.parametrize("environment, extra", [("staging", []), ("production", ["-e", "shipit_confirm=production"])])
def test_staging_and_production_refuse_without_their_vault(environment, extra):
    proc = run("ansible-playbook", "-i", f"inventories/{environment}", "playbooks/deploy.yml",
               "-e", "shipit_version=1.0.0", *extra)
    assert proc.returncode != 0
    assert "the inventory defines no vault_pulse_db_password" in proc.stdout, proc.stdout
    assert "UNREACHABLE" not in proc.stdout, "refused before any host was contacted"
