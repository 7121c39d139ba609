"""Helpers shared by the Molecule scenarios' testinfra tests: they drive the collection's playbooks as a user
would (a nested ansible-playbook against the scenario's inventory) and read the host's state independently.

Each scenario's tests import it with the molecule/ directory put on sys.path.
"""

import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
LEDGER = "/var/lib/shipit/pulse/ledger.json"


def playbook_argv(name, *args, inventory=None, extra=None):
    inventories = [os.environ["MOLECULE_INVENTORY_FILE"]] + ([inventory] if inventory else [])
    argv = ["ansible-playbook", *sum((["-i", i] for i in inventories), []), str(REPO / "playbooks" / name), *args]
    return argv + (["-e", json.dumps(extra)] if extra else [])


def playbook_env():
    # No colours; the development inventory's throw-away vault password for the scenarios that use it.
    return dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
                ANSIBLE_VAULT_PASSWORD_FILE=str(REPO / "inventories/development/vault-password.txt"))


def playbook(name, *args, inventory=None, extra=None):
    """Run one of the collection's playbooks; extra: a dict of extra vars (passed as JSON)."""
    # ansible-core 2.19 prints task errors on stderr: keep both streams, in order.
    return subprocess.run(playbook_argv(name, *args, inventory=inventory, extra=extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900, check=False, env=playbook_env())


def changed_count(proc, host_name):
    """The changed= count of host_name in the run's recap."""
    match = re.search(rf"{re.escape(host_name)}\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:]
    return int(match.group(1))


def health(host):
    """pulse's /health as seen from the host itself; {"status": "down"} when it does not answer JSON."""
    out = host.run("curl -s --max-time 5 http://127.0.0.1:8080/health").stdout
    return json.loads(out) if out.startswith("{") else {"status": "down", "raw": out}


def ledger(host):
    return json.loads(host.file(LEDGER).content_string)["releases"]


def live(host):
    [entry] = [e for e in ledger(host) if e["status"] == "live"]
    return entry


def main_pid(host):
    return host.check_output("systemctl show --property MainPID --value pulse.service")
