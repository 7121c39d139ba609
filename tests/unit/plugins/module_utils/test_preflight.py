"""Host preflight checks against the real machine: programs, free space, a real listening socket."""

import os
import pwd
import socket

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _preflight


def test_present_binaries_pass_and_missing_ones_name_the_package():
    assert _preflight.check_binaries(["sh", "ls"]) == []
    [problem] = _preflight.check_binaries(["sh", "no-such-prog-1", "no-such-prog-2"], {"no-such-prog-1": "pkg-one"})
    assert problem["problem"] == "required programs are missing: no-such-prog-1, no-such-prog-2"
    assert problem["fix"] == "install them, e.g. apt-get install no-such-prog-2 pkg-one"


def test_disk_threshold_measures_the_nearest_existing_parent(tmp_path):
    not_yet = tmp_path / "srv" / "pulse" / "releases"
    problems, seen = _preflight.check_disk([{"path": str(not_yet), "min_free_mb": 1}])
    assert problems == [] and seen[str(not_yet)] > 1
    problems, _ = _preflight.check_disk([{"path": str(not_yet), "min_free_mb": 10 ** 9, "why": "release and backup"}])
    [problem] = problems
    assert f"free on {tmp_path} for {not_yet}, 1000000000 MB needed (release and backup)" in problem["problem"]
    assert "free space there" in problem["fix"]


@pytest.fixture()
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def own_units():
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        return [part for line in handle for part in line.strip().split(":", 2)[-1].split("/") if part]


def test_a_free_port_passes():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert _preflight.check_ports([port], ["pulse.service"])[0] == []


def test_a_port_held_by_another_process_is_refused(listening):
    problems, seen = _preflight.check_ports([listening], ["pulse.service"])
    [problem] = problems
    assert f"port {listening} is in use by" in problem["problem"] and f"pid {os.getpid()}" in problem["problem"]
    assert seen[str(listening)][0]["pid"] == os.getpid()
    assert seen[str(listening)][0]["user"] == pwd.getpwuid(os.getuid()).pw_name


def test_a_port_held_by_the_apps_user_passes(listening):
    assert _preflight.check_ports([listening], ["pulse.service"], [pwd.getpwuid(os.getuid()).pw_name])[0] == []


@pytest.mark.skipif(not own_units(), reason="this process is in the root cgroup")
def test_a_port_held_by_the_app_itself_passes(listening):
    assert _preflight.check_ports([listening], [own_units()[-1]])[0] == []


def test_summary_names_the_host_and_every_fix():
    text = _preflight.summary("web1", [{"problem": "a", "fix": "b"}, {"problem": "c", "fix": "d"}])
    assert text == "preflight failed on web1, nothing was changed: (1) a; fix: b (2) c; fix: d"
