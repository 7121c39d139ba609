"""The lab is a real set of target hosts: systemd as PID 1, sshd, their own Docker engine, reached by
Ansible over SSH; pulse runs on them by hand from its tarball and from its image.

The fixture brings the lab up itself (idempotent: hosts already up are left as they are).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lab import hosts as lab_hosts  # noqa: E402

pytestmark = pytest.mark.lab
HOST = "web1"


def run(*argv, timeout=900, **kwargs):
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def ssh(command, timeout=120):
    """A command on the lab host over real SSH, as the deploy user (sudo for root)."""
    return run(*lab_hosts.ssh_argv(lab_hosts.lab_hosts()[HOST], command), timeout=timeout)


def wait_healthy(url_on_host, attempts=40):
    """Poll from the host itself, bounded: the app listens on the host's loopback."""
    last = None
    for _ in range(attempts):
        last = ssh(f"curl -s --max-time 2 {url_on_host}")
        if last.returncode == 0 and last.stdout.strip():
            body = json.loads(last.stdout)
            if body.get("status") == "healthy":
                return body
        time.sleep(0.5)
    raise AssertionError(f"{url_on_host} never became healthy: {last.stdout} {last.stderr}")


@pytest.fixture(scope="module")
def lab():
    proc = run(sys.executable, "-m", "lab", "up", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_lab_status_shows_running_systemd_and_docker(lab):
    proc = run(sys.executable, "-m", "lab", "status")
    assert proc.returncode == 0, proc.stdout
    for name in lab_hosts.lab_hosts():
        [row] = [line for line in proc.stdout.splitlines() if line.startswith(name + " ")]
        assert " running " in row and "20.10" in row, row


def test_ansible_reaches_every_lab_host_over_ssh(lab):
    proc = run(str(Path(sys.executable).parent / "ansible"), "-i", "inventories/lab", "all",
               "-m", "ansible.builtin.ping", "-e", "ansible_connection=ssh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("pong") == len(lab_hosts.lab_hosts())


def test_pulse_runs_by_hand_from_its_tarball(lab, tmp_path):
    build = run(sys.executable, "examples/pulse/build.py", "tarball", "--version", "1.0.0", "--out", str(tmp_path))
    assert build.returncode == 0, build.stderr
    tarball = Path(build.stdout.splitlines()[0])
    hostvars = lab_hosts.lab_hosts()[HOST]
    copy = run("scp", "-i", str(lab_hosts.SSH_KEY), "-P", str(hostvars["ansible_port"]),
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               str(tarball), f"deploy@127.0.0.1:/tmp/{tarball.name}")
    assert copy.returncode == 0, copy.stderr
    start = ssh(
        "set -e; rm -rf /tmp/pulse-by-hand; mkdir /tmp/pulse-by-hand; cd /tmp/pulse-by-hand; "
        f"tar xzf /tmp/{tarball.name}; "
        "export PULSE_PORT=18901 PULSE_LISTEN_HOST=127.0.0.1 PULSE_DATABASE_URL=sqlite:////tmp/pulse-by-hand/pulse.db; "
        "bin/pulse migrate; (setsid bin/pulse serve >serve.log 2>&1 </dev/null & echo $! > serve.pid)"
    )
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        body = wait_healthy("http://127.0.0.1:18901/health")
        assert (body["version"], body["db"]) == ("1.0.0", "ok")
    finally:
        ssh("kill $(cat /tmp/pulse-by-hand/serve.pid); rm -rf /tmp/pulse-by-hand")


def test_pulse_runs_by_hand_from_its_image(lab):
    build = run(sys.executable, "examples/pulse/build.py", "image", "--version", "1.0.0")
    assert build.returncode == 0, build.stdout + build.stderr
    lab_hosts.load_image(HOST, "pulse:1.0.0")
    name = "pulse-by-hand"
    ssh(f"sudo docker rm -f {name}; sudo docker volume rm -f {name}")
    migrate = ssh(f"sudo docker run --rm -v {name}:/var/lib/pulse pulse:1.0.0 migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    start = ssh(f"sudo docker run -d --name {name} -v {name}:/var/lib/pulse -p 127.0.0.1:18902:8080 pulse:1.0.0")
    assert start.returncode == 0, start.stderr
    try:
        body = wait_healthy("http://127.0.0.1:18902/health")
        assert body["version"] == "1.0.0"
        inspect = ssh(f"sudo docker inspect -f '{{{{.State.Health.Status}}}}' {name}")
        for _ in range(20):  # the image's own HEALTHCHECK agrees (interval 1 s)
            if inspect.stdout.strip() == "healthy":
                break
            time.sleep(0.5)
            inspect = ssh(f"sudo docker inspect -f '{{{{.State.Health.Status}}}}' {name}")
        assert inspect.stdout.strip() == "healthy"
    finally:
        ssh(f"sudo docker rm -f {name}; sudo docker volume rm -f {name}")
