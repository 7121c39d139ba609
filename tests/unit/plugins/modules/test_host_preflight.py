"""host_preflight runs as a real collection module (ansible ad-hoc on localhost)."""

import json
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


def test_ledger_is_read_with_the_checks(tmp_path):
    ledger_dir = tmp_path / "shipit"
    (ledger_dir / "pulse").mkdir(parents=True)
    (ledger_dir / "pulse" / "ledger.json").write_text(json.dumps({"app": "pulse", "releases": [
        {"release_id": "20261125T100000Z", "version": "1.0.0", "status": "good"},
        {"release_id": "20261125T110000Z", "version": "1.1.0", "status": "live"}]}))
    result = run_module("host_preflight", {"ledger": {"app": "pulse", "ledger_dir": str(ledger_dir)}})
    assert not result.get("failed"), result
    assert result["ledger"]["live"]["version"] == "1.1.0" and result["ledger"]["previous_good"]["version"] == "1.0.0"

    missing = run_module("host_preflight", {"ledger": {"app": "other", "ledger_dir": str(ledger_dir)}})
    assert missing["ledger"]["live"] is None and missing["ledger"]["exists"] is False


def test_unreadable_ledger_is_a_problem_of_the_preflight(tmp_path):
    (tmp_path / "pulse").mkdir()
    (tmp_path / "pulse" / "ledger.json").write_text("{not json")
    result = run_module("host_preflight", {"host_label": "web1", "ledger": {"app": "pulse", "ledger_dir": str(tmp_path)}})
    assert result["failed"] and result["msg"].startswith("preflight failed on web1, nothing was changed: (1) cannot read")
    assert "fix: repair the ledger file" in result["msg"]
