"""Run one of the collection's playbooks through ansible-runner: where things are, secrets, artifacts.

Each run gets its own private data directory (``.shipit/runs/<UTC time>-<operation>-<env>/`` or
``--artifacts-dir``): the runner's inputs (``env/``) and artifacts (``artifacts/<ident>/``: stdout, events,
status, rc) stay there next to report.json and report.md. Secrets never go there: the vault password is
read from a file the caller names, or from SHIPIT_VAULT_PASSWORD, which is written to a 0600 file in a
private temporary directory outside the run directory and removed when the run ends.
"""

import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
from pathlib import Path

PLAYBOOKS = {
    "deploy": "deploy.yml",
    "rollback": "rollback.yml",
    "backup": "backup.yml",
    "restore": "restore.yml",
    "maintenance": "maintenance.yml",
    "history": "history.yml",
}
VAULT_ENV = "SHIPIT_VAULT_PASSWORD"
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Environment variables whose values the runner's "command" artifact must not keep (it records the whole
# environment of the run). They are still passed to Ansible: dynamic inventories and lookups need them.
SECRET_ENV_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|VAULT", re.IGNORECASE)
NOT_SECRET_ENV = frozenset({"ANSIBLE_HOST_KEY_CHECKING", "SSH_AUTH_SOCK", "ANSIBLE_VAULT_PASSWORD_FILE",
                            "ANSIBLE_PRIVATE_KEY_FILE", "ANSIBLE_SSH_PRIVATE_KEY_FILE"})
REDACTED = "********"


class ShipitError(Exception):
    """A problem found before anything ran: bad input, a missing inventory or playbook (exit 1)."""


def _is_collection_root(path):
    return (path / "playbooks" / "deploy.yml").is_file() and (
        (path / "galaxy.yml").is_file() or (path / "MANIFEST.json").is_file())


def find_project(explicit=None):
    """The root of the shipit.deploy collection: the playbooks, and ansible.cfg in a checkout.

    Order: --project-dir / SHIPIT_PROJECT_DIR; the checkout this package lives in (an editable install);
    an installed collection (ANSIBLE_COLLECTIONS_PATH, ~/.ansible/collections, /usr/share/ansible/collections,
    site-packages).
    """
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not _is_collection_root(path):
            raise ShipitError(f"{path} is not the shipit.deploy collection (no playbooks/deploy.yml and galaxy.yml)")
        return path
    checkout = Path(__file__).resolve().parents[1]
    if _is_collection_root(checkout):
        return checkout
    roots = []
    for var in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        roots += [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    roots += ["~/.ansible/collections", "/usr/share/ansible/collections", *sys.path]
    for root in roots:
        base = Path(root).expanduser()
        for candidate in (base / "ansible_collections" / "shipit" / "deploy", base / "shipit" / "deploy"):
            if _is_collection_root(candidate):
                return candidate.resolve()
    raise ShipitError("cannot find the shipit.deploy collection: run from a checkout, install the collection, "
                      "or name it with --project-dir")


def find_inventory(env, project, inventories=None):
    """inventories/<env>: under --inventories / SHIPIT_INVENTORIES, else ./inventories, else the project's."""
    if not ENV_NAME.match(env or ""):
        raise ShipitError(f"bad environment name {env!r}: letters, digits, '.', '_' and '-' only")
    roots = [Path(inventories)] if inventories else [Path.cwd() / "inventories", project / "inventories"]
    for root in roots:
        candidate = (root / env).resolve()
        if candidate.exists():
            return candidate
    raise ShipitError(f"no inventory for environment {env!r}: looked for "
                      + ", ".join(str(r / env) for r in roots))


def find_playbook(operation, project):
    playbook = project / "playbooks" / PLAYBOOKS[operation]
    if not playbook.is_file():
        raise ShipitError(f"shipit {operation} runs playbooks/{PLAYBOOKS[operation]}, which this version of the "
                          f"collection does not have ({playbook} is missing)")
    return playbook


def new_run_dir(operation, env, explicit=None, base=None):
    """A fresh private data directory for the run (0700: the runner keeps the run's inputs there)."""
    if explicit:
        path = Path(explicit).resolve()
        if path.exists() and any(path.iterdir()):
            raise ShipitError(f"--artifacts-dir {path} is not empty: give every run its own directory")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    base = Path(base or os.environ.get("SHIPIT_RUNS_DIR") or Path.cwd() / ".shipit" / "runs")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = base / f"{stamp}-{operation}-{env}"
    path.mkdir(mode=0o700, parents=True)
    return path.resolve()


@contextlib.contextmanager
def vault_password_file(explicit=None):
    """Path of the vault password file for --vault-password-file, or None.

    SHIPIT_VAULT_PASSWORD is taken out of this process's environment (so no child and no artifact sees it),
    written to a 0600 file in a 0700 temporary directory outside the run directory, and removed at the end.
    """
    from_env = os.environ.pop(VAULT_ENV, None)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not path.is_file() and not os.access(path, os.X_OK):
            raise ShipitError(f"--vault-password-file {path} does not exist")
        yield path
        return
    if not from_env:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="shipit-vault-")
    try:
        path = Path(directory) / "vault-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(from_env.rstrip("\n") + "\n")
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def redact_command_artifact(artifact_dir):
    """The runner's "command" artifact records the run's whole environment: keep names, drop secret values."""
    path = Path(artifact_dir) / "command"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    env = data.get("env") or {}
    changed = False
    for name in list(env):
        if SECRET_ENV_NAME.search(name) and name not in NOT_SECRET_ENV and env[name] != REDACTED:
            env[name] = REDACTED
            changed = True
    if changed:
        tmp = path.with_name(".command.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False)
        os.replace(tmp, path)


def run_playbook(*, project, playbook, inventory, run_dir, ident, extravars, limit=None, check=False,
                 vault_file=None, verbosity=0, timeout=None, event_handler=None, cancel_callback=None):
    """Run the playbook with ansible_runner.run and return the Runner (rc, status, artifact dir)."""
    import ansible_runner  # imported here: `shipit --help` and the unit tests need no runner

    envvars = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    # The Ansible installed beside this Python (a venv's bin/ is not always on PATH, e.g. in a git hook).
    bindir = Path(sys.executable).parent
    if (bindir / "ansible-playbook").exists():
        envvars["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", os.defpath)])
    if (project / "ansible.cfg").is_file() and "ANSIBLE_CONFIG" not in os.environ:
        envvars["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")  # a checkout: shipit.deploy.* is this tree
    cmdline = []
    if check:
        cmdline.append("--check")
    if vault_file:
        cmdline += ["--vault-password-file", str(vault_file)]
    artifact_dir = Path(run_dir) / "artifacts" / ident

    def on_status(status, runner_config=None):
        # The runner writes the "command" artifact (with the environment) just before it starts Ansible.
        if status.get("status") == "running":
            redact_command_artifact(artifact_dir)

    try:
        return ansible_runner.run(
            private_data_dir=str(run_dir),
            ident=ident,
            project_dir=str(project),
            playbook=str(playbook.relative_to(project)),
            inventory=str(inventory),
            extravars=extravars,
            envvars=envvars,
            cmdline=shlex.join(cmdline) or None,
            limit=limit,
            verbosity=verbosity or None,
            timeout=timeout,
            quiet=True,
            event_handler=event_handler,
            status_handler=on_status,
            cancel_callback=cancel_callback,
        )
    finally:
        redact_command_artifact(artifact_dir)


def runner_output_tail(artifact_dir, lines=5):
    """The last lines Ansible printed, for a run that failed before any task: the only word on why."""
    try:
        text = (Path(artifact_dir) / "stdout").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " ".join(tail)[-1000:] or None
