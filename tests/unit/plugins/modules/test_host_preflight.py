"""host_preflight runs as a real collection module (ansible ad-hoc on localhost)."""

import socket

from test_deploy_lock import run_module


def test_ready_host_passes(tmp_path):
    result = run_module("host_preflight", {"host_label": "web1", "binaries": ["sh"],
                                           "disk": [{"path": str(tmp_path / "srv"), "min_free_mb": 1}]})
    assert not result.get("failed") and result["changed"] is False
    assert result["msg"] == "web1 is ready for the deploy"


def test_every_problem_is_reported_at_once_with_host_and_fix(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        result = run_module("host_preflight", {
            "host_label": "web1", "binaries": ["sh", "no-such-prog"], "package_hints": {"no-such-prog": "nsp"},
            "disk": [{"path": str(tmp_path), "min_free_mb": 10 ** 9, "why": "release and backup"}],
            "ports": [port], "port_owners": ["pulse.service"]})
    finally:
        sock.close()
    assert result["failed"]
    assert result["msg"].startswith("preflight failed on web1, nothing was changed: (1) required programs are missing")
    assert "apt-get install nsp" in result["msg"] and "(2) only " in result["msg"]
    assert f"(3) port {port} is in use" in result["msg"]
    assert [p["check"] for p in result["problems"]] == ["binaries", "disk", "ports"]


def test_bad_port_is_refused():
    result = run_module("host_preflight", {"ports": [70000]})
    assert result["failed"] and "ports must be between 1 and 65535" in result["msg"]
