"""Lab hosts: the containers named in inventories/lab (or another inventory, e.g. bench/inventory), each a
Debian 12 machine with systemd as PID 1.

Host variables read here: ansible_port (SSH, published on 127.0.0.1), lab_http_port (the host's app port
published on 127.0.0.1), lab_docker (default true; false: a light host whose Docker engine is never started).
"""

import subprocess
import time
from pathlib import Path

import yaml

from .engine import run

REPO_ROOT = Path(__file__).resolve().parents[1]
INVENTORY = REPO_ROOT / "inventories" / "lab" / "hosts.yml"
STATE_DIR = REPO_ROOT / ".lab"
SSH_KEY = STATE_DIR / "id_ed25519"
LABEL = "shipit.lab=1"

# systemd as PID 1 and a nested Docker engine without --privileged, which fails on these VMs ("unable to apply
# caps": the VM lacks CAP_SYS_RESOURCE). These capabilities, the host cgroup namespace, unconfined
# seccomp/AppArmor, tmpfs /run and a real /var/lib/docker volume are enough for both.
# SYS_PTRACE: without it `docker exec` in the nested engine fails ("error executing setns process"),
# and with it every container HEALTHCHECK, which Compose's `up --wait` relies on.
CONTAINER_FLAGS = (
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE", "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
)


def inventory_file(inventory=None):
    """The hosts.yml of an inventory given as a directory or a file (default inventories/lab)."""
    path = Path(inventory) if inventory else INVENTORY
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path / "hosts.yml" if path.is_dir() else path


def lab_hosts(inventory=None):
    """{name: hostvars} for every host of the inventory's hosts.yml, inherited group vars included."""
    data = yaml.safe_load(inventory_file(inventory).read_text())
    hosts = {}

    def walk(group, inherited):
        merged = {**inherited, **(group.get("vars") or {})}
        for name, hostvars in (group.get("hosts") or {}).items():
            hosts.setdefault(name, {}).update({**merged, **(hostvars or {})})
        for child in (group.get("children") or {}).values():
            walk(child or {}, merged)

    walk(data["all"], {})
    return hosts


def container_name(host):
    return f"shipit-lab-{host}"


def docker_exec(host, *argv, check=True, input_bytes=None, timeout=120):
    return run(["docker", "exec", "-i", container_name(host), *argv], check=check, input_bytes=input_bytes,
               timeout=timeout)


def ensure_ssh_key():
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    if not SSH_KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shipit-lab", "-f", str(SSH_KEY)])
    return SSH_KEY.with_suffix(".pub").read_bytes()


def container_state(host):
    proc = run(["docker", "inspect", "-f", "{{.State.Status}}", container_name(host)], check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else "absent"


def start_host(host, hostvars, image_ref):
    """Create (or start) the host's container; an existing one of the current image is kept as it is."""
    state = container_state(host)
    if state != "absent":
        image = run(["docker", "inspect", "-f", "{{.Config.Image}}", container_name(host)]).stdout.decode().strip()
        if image != image_ref:  # the recipe changed: a host from the old image would test the wrong thing
            remove_host(host)
            state = "absent"
    if state == "running":
        return False
    if state != "absent":
        run(["docker", "start", container_name(host)])
        return True
    ports = ["-p", f"127.0.0.1:{hostvars['ansible_port']}:22"]
    if "lab_http_port" in hostvars:
        ports += ["-p", f"127.0.0.1:{hostvars['lab_http_port']}:{hostvars.get('lab_app_port', 8080)}"]
    # Nested overlay2 needs /var/lib/docker on a real filesystem, not on the container's overlay.
    volume = ["-v", f"{container_name(host)}-docker:/var/lib/docker"] if hostvars.get("lab_docker", True) else []
    run(["docker", "run", "-d", "--name", container_name(host), "--hostname", host, "--label", LABEL,
         *CONTAINER_FLAGS, *ports, *volume, image_ref])
    return True


def wait_booted(host, timeout=120):
    """Wait until systemd finished booting; return its final state (running / degraded / ...)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = docker_exec(host, "systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
        state = proc.stdout.decode().strip()
        if state in ("running", "degraded") or time.monotonic() > deadline:
            return state
        time.sleep(1)


def provision(host, public_key, docker=True):
    """What a real host would have from its provisioning: the deploy user's key and (docker) a running Docker."""
    docker_exec(host, "sh", "-c",
                "install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh && "
                "cat > /home/deploy/.ssh/authorized_keys && "
                "chown deploy:deploy /home/deploy/.ssh/authorized_keys && "
                "chmod 0600 /home/deploy/.ssh/authorized_keys", input_bytes=public_key)
    if docker:
        docker_exec(host, "systemctl", "enable", "--now", "docker.service", timeout=180)


def ssh_argv(hostvars, *command):
    return ["ssh", "-i", str(SSH_KEY), "-p", str(hostvars["ansible_port"]),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            f"{hostvars.get('ansible_user', 'deploy')}@{hostvars.get('ansible_host', '127.0.0.1')}", *command]


def wait_ssh(hostvars, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        proc = run(ssh_argv(hostvars, "true"), check=False, timeout=30)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"ssh to port {hostvars['ansible_port']} failed: {proc.stderr.decode().strip()}")
        time.sleep(1)


def host_status(host, docker=True):
    state = container_state(host)
    status = {"host": host, "container": state, "systemd": "-", "docker": "-" if docker else "off"}
    if state == "running":
        status["systemd"] = docker_exec(host, "systemctl", "is-system-running", check=False).stdout.decode().strip()
        if docker:
            info = docker_exec(host, "docker", "info", "--format", "{{.ServerVersion}}", check=False)
            status["docker"] = info.stdout.decode().strip() if info.returncode == 0 else "not answering"
    return status


def remove_host(host):
    run(["docker", "rm", "-f", "-v", container_name(host)], check=False)
    run(["docker", "volume", "rm", "-f", f"{container_name(host)}-docker"], check=False)


def load_image(host, image):
    """Copy an image from this machine's engine into the host's own engine (there is no registry)."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "exec", "-i", container_name(host), "docker", "load", "-q"],
                          stdin=save.stdout, capture_output=True, check=False)
    save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"loading {image} into {host} failed: {load.stderr.decode(errors='replace')}")
