"""build.py: reproducible tarballs and the Docker image."""

import json
import shutil
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from pulse_testlib import PULSE_DIR, http, free_port, pulse_build

BUILD = [sys.executable, str(PULSE_DIR / "build.py")]
REPO_ROOT = PULSE_DIR.parents[1]


def test_tarball_is_reproducible(tmp_path):
    first = pulse_build.build_tarball("1.0.0", False, tmp_path / "a")
    time.sleep(1.1)  # a build time leaking into the file would show up now
    second = pulse_build.build_tarball("1.0.0", False, tmp_path / "b")
    assert first.name == "pulse-1.0.0.tar.gz"
    assert first.read_bytes() == second.read_bytes()
    assert pulse_build.sha256_file(first) == pulse_build.sha256_file(second)
    broken = pulse_build.build_tarball("1.0.0", True, tmp_path / "c")
    assert pulse_build.sha256_file(broken) != pulse_build.sha256_file(first)


def test_tarball_layout(tmp_path):
    stray = PULSE_DIR / "src" / "pulse" / "__pycache__" / "stray-test.cpython-311.pyc"  # must never be packed
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"")
    try:
        path = pulse_build.build_tarball("1.2.3-rc1", False, tmp_path)
    finally:
        stray.unlink()
    assert path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "RELEASE.json", "bin", "bin/pulse", "pulse", "pulse/__init__.py", "pulse/__main__.py",
            "pulse/_build.py", "pulse/cli.py", "pulse/migrations.py", "pulse/pgwire.py", "pulse/server.py",
            "pulse/storage.py",
        ]
        assert [m.name for m in tar.getmembers()] == sorted(members)
        for name, member in members.items():
            assert (member.uid, member.gid, member.mtime) == (0, 0, pulse_build.FIXED_MTIME), name
            expected = 0o755 if member.isdir() or name == "bin/pulse" else 0o644
            assert member.mode == expected, name
        assert json.load(tar.extractfile("RELEASE.json")) == {"name": "pulse", "version": "1.2.3-rc1",
                                                              "broken": False}
        assert b"VERSION = '1.2.3-rc1'" in tar.extractfile("pulse/_build.py").read()


def test_cli_prints_path_and_sha256(tmp_path):
    out = subprocess.run(BUILD + ["tarball", "--version", "1.0.0", "--broken", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True, timeout=60)
    path, digest = out.stdout.splitlines()
    assert path == str(tmp_path / "pulse-1.0.0.tar.gz")
    assert digest == pulse_build.sha256_file(path)
    as_json = subprocess.run(BUILD + ["tarball", "--version", "1.0.0", "--broken", "--out", str(tmp_path), "--json"],
                             capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(as_json.stdout) == {"path": path, "sha256": digest, "version": "1.0.0", "broken": True}
    assert [p.name for p in tmp_path.iterdir()] == ["pulse-1.0.0.tar.gz"]  # no temp files left


def test_bad_version_is_refused(tmp_path):
    out = subprocess.run(BUILD + ["tarball", "--version", "1.0", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "bad version '1.0'" in out.stderr


def test_dockerfile():
    text = pulse_build.dockerfile("1.1.0", True, "shipit-lab/runtime:latest", "pulse-1.1.0.tar.gz")
    assert text.splitlines()[1] == "FROM shipit-lab/runtime:latest"
    assert "ADD pulse-1.1.0.tar.gz /opt/pulse/" in text
    assert "USER 10001:10001" in text and "EXPOSE 8080" in text
    assert "HEALTHCHECK --interval=1s" in text and "--start-interval" not in text
    assert 'org.opencontainers.image.version="1.1.0"' in text and 'shipit.pulse.broken="true"' in text
    assert 'ENTRYPOINT ["/opt/pulse/bin/pulse"]' in text and 'CMD ["serve"]' in text


def test_image_with_missing_base_fails_clearly():
    out = subprocess.run(BUILD + ["image", "--version", "1.0.0", "--base", f"shipit-lab/no-such-{uuid.uuid4().hex}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    # Whichever is missing here: the CLI, the daemon or (with a daemon) the base image.
    assert any(reason in out.stderr for reason in ("not on PATH", "no Docker daemon answers", "does not exist locally"))


def _docker(*args, check=True, timeout=120):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.mark.lab
def test_image_runs_and_stops_fast(tmp_path):
    """Build the image on the lab's runtime base, run it, migrate, health, stop: the way deploys use it."""
    # Idempotent and quick when the engine runs and the images exist (CI's bootstrap has done it).
    subprocess.run([sys.executable, "-m", "lab", "images"], cwd=REPO_ROOT, check=True, timeout=1800)
    tag = f"pulse-test:{uuid.uuid4().hex[:12]}"
    name = f"pulse-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    try:
        assert pulse_build.build_image("1.1.0", tag=tag) == tag
        _docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", tag)
        assert "applied migration 2" in _docker("exec", name, "/opt/pulse/bin/pulse", "migrate").stdout
        deadline = time.monotonic() + 30
        while _docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() != "healthy":
            assert time.monotonic() < deadline, _docker("logs", name).stderr
            time.sleep(0.5)
        assert http("GET", f"http://127.0.0.1:{port}/health")[1]["version"] == "1.1.0"
        started = time.monotonic()
        _docker("stop", "--time", "10", name)
        assert time.monotonic() - started < 3
        assert _docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        if shutil.which("docker"):
            _docker("rm", "-f", name, check=False)
            _docker("rmi", tag, check=False)
