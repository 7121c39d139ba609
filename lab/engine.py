"""Make sure a Docker engine runs on this machine (install it from Debian and start it if needed)."""

import shutil
import subprocess
import time
from pathlib import Path

DOCKERD_LOG = Path("/var/log/dockerd.log")


def run(argv, check=True, capture=True, input_bytes=None, timeout=None):
    """Run a command; on failure raise with its stderr, which is what an operator needs to see."""
    proc = subprocess.run(argv, input=input_bytes, capture_output=capture, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip() if capture else ""
        raise RuntimeError(f"{' '.join(map(str, argv))} failed (rc={proc.returncode}): {stderr[-2000:]}")
    return proc


def apt_install(*packages):
    """Install Debian packages that are missing (one apt-get update per call)."""
    missing = [p for p in packages if run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout != b"install ok installed"]
    if not missing:
        return
    print(f"lab: installing {' '.join(missing)} from Debian", flush=True)
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run(env_prefix + ["apt-get", "update", "-qq"], timeout=600)
    run(env_prefix + ["apt-get", "install", "-y", "-qq", *missing], timeout=1200)


def engine_answers():
    return shutil.which("docker") is not None and run(["docker", "info"], check=False, timeout=30).returncode == 0


def ensure_engine(wait_seconds=90):
    """Idempotent: a running engine is left alone; otherwise install docker.io and start dockerd."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    if engine_answers():  # the package's own service may have started it
        return
    print(f"lab: starting dockerd (log: {DOCKERD_LOG})", flush=True)
    with DOCKERD_LOG.open("ab") as log:
        # A new session so the daemon outlives this command (CI and the demo run it in the background).
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(1)
    raise RuntimeError(f"dockerd did not answer within {wait_seconds}s; see {DOCKERD_LOG}")
