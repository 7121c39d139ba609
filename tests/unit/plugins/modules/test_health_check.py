"""End-to-end tests of shipit.deploy.health_check against real services on 127.0.0.1.

The module runs for real: ``main()`` with its arguments (``patch_module_args``), its JSON result read
from stdout, probing a real HTTP server whose answers each test scripts, a real TCP listener, a
closed port, and real commands. One test runs it through the ``ansible`` CLI as a collection
module, and one checks that the documentation matches the argument spec.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.shipit.deploy.plugins.module_utils._steps import health_check as health_check_body
from ansible_collections.shipit.deploy.plugins.modules import health_check

REPO_ROOT = Path(__file__).resolve().parents[4]
VENV_BIN = Path(sys.executable).parent

HEALTHY = (200, '{"status": "healthy", "checks": {"db": {"state": "up"}}, "items": [{"name": "a"}]}')
UNHEALTHY = (503, '{"status": "unhealthy", "checks": {"db": {"state": "down"}}}')


# Services ---------------------------------------------------------------------------------


class ScriptedServer:
    """An HTTP server on 127.0.0.1 answering from a script of (status, body[, delay]) tuples.

    Each request takes the next answer; the last one repeats. Requests are recorded with their
    arrival time, method, path, headers and body.
    """

    def __init__(self, tls_context=None):
        self.answers = [HEALTHY]
        self.requests = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with server._lock:
                    server.requests.append(dict(at=time.monotonic(), method=self.command, path=self.path,
                                                headers=dict(self.headers), body=body))
                    answer = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                status, payload = answer[0], answer[1].encode()
                if len(answer) > 2:
                    time.sleep(answer[2])
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls_context else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.thread.start()

    def url(self, path="/health"):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def script(self, *answers):
        with self._lock:
            self.answers = list(answers)
            self.requests = []

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def tcp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def run_module(capsys, **args):
    """Run the module's main() with ``args``; returns (failed, result)."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            health_check.main()
    result = json.loads(capsys.readouterr().out)
    assert exc.value.code == (1 if result.get("failed") else 0)
    return bool(result.get("failed")), result


def fast(**args):
    """Small intervals and timeouts so the whole file runs in seconds."""
    return dict(dict(retries=3, interval=0.05, timeout=1), **args)


# HTTP -------------------------------------------------------------------------------------


def test_a_check_creates_no_remote_tmp_and_warns_nothing(capsys, server, tmp_path):
    """A host's first run: Ansible's remote_tmp does not exist yet. A health check writes no file, so it
    leaves it absent instead of creating it with a warning the user cannot act on."""
    remote_tmp = tmp_path / "home" / ".ansible" / "tmp"
    failed, result = run_module(capsys, _ansible_remote_tmp=str(remote_tmp), _ansible_keep_remote_files=False,
                                **fast(kind="http", url=server.url()))
    assert not failed, result
    assert not result.get("warnings"), result["warnings"]
    assert not remote_tmp.exists()


def test_http_healthy_with_json_equals_one_of_and_present(capsys, server):
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), json=[
        dict(path="status", equals="healthy"),
        dict(path="checks.db.state", one_of=["up", "degraded"]),
        dict(path="items.0.name", present=True),
        dict(path="errors", present=False),
    ]))
    assert not failed
    assert result["changed"] is False
    assert (result["healthy"], result["attempts"], result["passes"]) == (True, 1, 1)
    assert result["status"] == 200
    assert json.loads(result["body"])["status"] == "healthy"
    assert result["last_failure"] is None
    assert result["msg"] == "health check http GET %s healthy after 1 attempt in %.1fs" % (
        server.url(), result["elapsed"])


def test_http_becomes_healthy_after_failures(capsys, server):
    server.script(UNHEALTHY, UNHEALTHY, HEALTHY)
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=5,
                                               json=[dict(path="status", equals="healthy")]))
    assert not failed
    assert (result["healthy"], result["attempts"]) == (True, 3)
    assert result["last_failure"]["attempt"] == 2
    assert result["last_failure"]["assertion"] == "status in [200]"
    assert len(server.requests) == 3


def test_json_assertion_failure_names_the_assertion_and_the_value(capsys, server):
    server.script((503, '{"status": "unhealthy", "detail": "db down"}'))
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), status_codes=[200, 503],
                                               json=[dict(path="status", equals="healthy")]))
    assert failed and result["healthy"] is False
    assert result["msg"].startswith(
        "health check http GET %s failed after 3 attempts in " % server.url())
    assert result["msg"].endswith(
        """: json assertion status equals 'healthy' failed: got 'unhealthy' """
        """(HTTP 503, body: {"status": "unhealthy", "detail": "db down"})""")
    assert result["last_failure"]["assertion"] == "json assertion status equals 'healthy'"
    assert result["last_failure"]["reason"] == "got 'unhealthy'"
    assert result["last_failure"]["status"] == 503


def test_json_one_of_and_present_failures(capsys, server):
    server.script(UNHEALTHY)
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=1, status_codes=[503],
                                               json=[dict(path="checks.db.state", one_of=["up", "degraded"])]))
    assert failed
    assert "json assertion checks.db.state one_of ['up', 'degraded'] failed: got 'down'" in result["msg"]
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=1, status_codes=[503],
                                               json=[dict(path="checks.cache", present=True)]))
    assert "json assertion checks.cache is present failed: path not found: no key 'cache' at 'checks'" in result["msg"]


def test_body_regex(capsys, server):
    server.script((200, "ready: yes"))
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), body_regex=r"^ready: yes$"))
    assert not failed and result["healthy"]
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=1, body_regex=r"^ready: no"))
    assert failed
    assert result["msg"].endswith("body matches regex '^ready: no' failed: no match (HTTP 200, body: ready: yes)")


def test_status_mismatch_reports_status_and_truncated_body(capsys, server):
    long_body = '{"error": "%s"}' % ("x" * 3000)
    server.script((500, long_body))
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=2))
    assert failed
    assert "status in [200] failed: got 500 (HTTP 500, body: {\"error\": \"xxx" in result["msg"]
    assert len(result["msg"]) < 400                              # the body is cut short in the message
    assert result["status"] == 500
    assert result["body"].endswith("...[truncated, %d chars in total]" % len(long_body))
    assert len(result["body"]) < 1100
    assert result["last_failure"]["body"] == result["body"]


def test_connection_refused(capsys, closed_port):
    url = "http://127.0.0.1:%d/health" % closed_port
    failed, result = run_module(capsys, **fast(kind="http", url=url, retries=2))
    assert failed
    assert result["msg"].startswith("health check http GET %s failed after 2 attempts in " % url)
    assert result["msg"].endswith("HTTP request completes within 1s failed: [Errno 111] Connection refused")
    assert result["last_failure"]["error"] == "[Errno 111] Connection refused"
    assert result["status"] is None and result["body"] is None


def test_timeout_per_attempt(capsys, server):
    server.script((200, "late", 3))
    started = time.monotonic()
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=2, timeout=0.3))
    took = time.monotonic() - started
    assert failed
    assert "HTTP request completes within 0.3s failed: timed out" in result["msg"]
    assert result["attempts"] == 2
    assert 0.6 <= took < 2.0


def test_request_method_headers_and_json_body_are_sent(capsys, server):
    failed, result = run_module(capsys, **fast(kind="http", url=server.url("/probe?x=1"), method="post",
                                               headers={"X-Probe": "deploy"}, body_json={"ping": [1, True]}))
    assert not failed
    request = server.requests[0]
    assert (request["method"], request["path"]) == ("POST", "/probe?x=1")
    assert request["headers"]["X-Probe"] == "deploy"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"ping": [1, True]}
    assert "POST" in result["msg"]


def test_header_values_never_reach_the_output(capsys, server):
    token = "Bearer s3cr3t-t0ken-value"
    server.script((401, '{"error": "bad token %s"}' % token))
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=1,
                                               headers={"Authorization": token}))
    assert failed
    assert server.requests[0]["headers"]["Authorization"] == token
    assert "s3cr3t" not in json.dumps(result)
    assert "got 401" in result["msg"]


# Timing -----------------------------------------------------------------------------------


def test_retries_count_and_bounded_elapsed(capsys, closed_port):
    started = time.monotonic()
    failed, result = run_module(capsys, kind="tcp", port=closed_port, retries=4, interval=0.2, timeout=1)
    took = time.monotonic() - started
    # The 4 retries and one quick attempt 0.1 s after the first (0.2 s would not fit in the first interval).
    assert failed and result["attempts"] == 5
    assert 0.6 <= result["elapsed"] <= took < 1.5        # three intervals, no sleep after the last


def test_max_wait_bounds_the_check(capsys, server):
    server.script((200, "late", 3))
    started = time.monotonic()
    failed, result = run_module(capsys, kind="http", url=server.url(), retries=100, interval=0.05,
                                timeout=5, max_wait=0.6)
    took = time.monotonic() - started
    assert failed
    assert result["attempts"] == 1                       # the timeout was cut to fit max_wait
    assert took < 1.2
    assert result["msg"].endswith("; gave up at max_wait 0.6s")


def test_initial_delay(capsys, server):
    started = time.monotonic()
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), initial_delay=0.4))
    assert not failed
    assert server.requests[0]["at"] - started >= 0.4
    assert result["elapsed"] >= 0.4


def test_flapping_service_never_gets_enough_consecutive_passes(capsys, server):
    server.script(HEALTHY, UNHEALTHY, HEALTHY, UNHEALTHY, HEALTHY, UNHEALTHY, HEALTHY)
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=7, success_threshold=2))
    assert failed and result["healthy"] is False
    assert result["attempts"] == 6         # after the 6th (a failure) one attempt is left: 2 in a row is impossible
    assert "needed 2 consecutive passes, got at most 1" in result["msg"]
    assert "status in [200] failed: got 503" in result["msg"]


def test_flapping_service_that_settles_passes_the_threshold(capsys, server):
    server.script(HEALTHY, UNHEALTHY, HEALTHY, UNHEALTHY, HEALTHY, HEALTHY, HEALTHY)
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), retries=8, success_threshold=3))
    assert not failed
    assert (result["healthy"], result["attempts"], result["passes"]) == (True, 7, 3)
    assert result["last_failure"]["attempt"] == 4
    assert result["msg"].endswith("(3 consecutive passes)")


# TCP and command --------------------------------------------------------------------------


def test_tcp_open_port(capsys, tcp_listener):
    failed, result = run_module(capsys, **fast(kind="tcp", port=tcp_listener))
    assert not failed
    assert (result["healthy"], result["attempts"]) == (True, 1)
    assert result["msg"].startswith("health check tcp 127.0.0.1:%d healthy after 1 attempt" % tcp_listener)
    assert "status" not in result


def test_tcp_closed_port(capsys, closed_port):
    failed, result = run_module(capsys, **fast(kind="tcp", port=closed_port, retries=2))
    assert failed
    assert result["msg"].endswith("TCP connect to 127.0.0.1:%d within 1s failed: [Errno 111] Connection refused"
                                  % closed_port)


def test_command_rc_and_stdout_regex(capsys):
    failed, result = run_module(capsys, **fast(kind="command", argv=[sys.executable, "-c", "print('state: active')"],
                                               stdout_regex=r"^state: active$"))
    assert not failed
    assert (result["healthy"], result["rc"], result["stdout"]) == (True, 0, "state: active\n")

    failed, result = run_module(capsys, **fast(kind="command", retries=1, expected_rc=3,
                                               argv=[sys.executable, "-c", "print('inactive'); raise SystemExit(3)"],
                                               stdout_regex=r"^active"))
    assert failed
    assert result["msg"].endswith("stdout matches regex '^active' failed: no match (rc 3, stdout: inactive)")

    failed, result = run_module(capsys, **fast(kind="command", retries=1,
                                               argv=["sh", "-c", "echo broken >&2; exit 4"]))
    assert failed
    assert result["msg"].endswith("rc == 0 failed: got 4 (rc 4, stderr: broken)")
    assert result["last_failure"]["rc"] == 4


def test_command_is_killed_after_timeout(capsys):
    started = time.monotonic()
    failed, result = run_module(capsys, **fast(kind="command", retries=1, timeout=0.3, argv=["sleep", "10"]))
    assert failed
    assert time.monotonic() - started < 2.5
    assert result["msg"].endswith("command finishes within 0.3s failed: killed after 0.3s")


def test_missing_command_is_an_unhealthy_attempt(capsys, tmp_path):
    missing = str(tmp_path / "no-such-program")
    failed, result = run_module(capsys, **fast(kind="command", retries=2, argv=[missing],
                                               fail_on_unhealthy=False))
    assert not failed
    assert (result["healthy"], result["attempts"]) == (False, 2)
    assert result["last_failure"]["error"] == "[Errno 2] No such file or directory: %s" % missing


# Reporting options and check mode ---------------------------------------------------------


def test_fail_on_unhealthy_false_returns_normally(capsys, server):
    server.script(UNHEALTHY)
    failed, result = run_module(capsys, **fast(kind="http", url=server.url(), fail_on_unhealthy=False))
    assert not failed
    assert result["healthy"] is False
    assert result["changed"] is False
    assert result["msg"].startswith("health check http GET %s failed after 3 attempts" % server.url())
    assert result["last_failure"]["status"] == 503


def test_check_mode_probes_and_reports_the_same(capsys, server):
    server.script(UNHEALTHY, HEALTHY)
    args = fast(kind="http", url=server.url(), retries=2, json=[dict(path="status", equals="healthy")])
    failed, checked = run_module(capsys, _ansible_check_mode=True, **args)
    assert len(server.requests) == 2                    # check mode really probed
    server.script(UNHEALTHY, HEALTHY)
    failed_real, real = run_module(capsys, **args)
    assert not failed and not failed_real
    for key in ("changed", "healthy", "attempts", "passes", "status", "body"):
        assert checked[key] == real[key], key
    assert checked["changed"] is False


# TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    srv = ScriptedServer(tls_context=context)
    yield srv
    srv.close()


def test_tls_validation_failure_is_an_unhealthy_attempt(capsys, tls_server):
    failed, result = run_module(capsys, **fast(kind="http", url=tls_server.url(), retries=2,
                                               fail_on_unhealthy=False))
    assert not failed                                   # fetch_url's own fail_json did not end the module
    assert (result["healthy"], result["attempts"]) == (False, 2)
    assert "CERTIFICATE_VERIFY_FAILED" in result["last_failure"]["error"]
    failed, result = run_module(capsys, **fast(kind="http", url=tls_server.url(), validate_certs=False))
    assert not failed and result["healthy"]


# Invalid options --------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (dict(kind="http"), "kind is http but all of the following are missing: url"),
    (dict(kind="tcp"), "kind is tcp but all of the following are missing: port"),
    (dict(kind="command"), "kind is command but all of the following are missing: argv"),
    (dict(kind="dns", url="http://127.0.0.1/"), "value of kind must be one of: http, tcp, command, got: dns"),
    (dict(kind="http", url="http://127.0.0.1/", body="x", body_json={}),
     "parameters are mutually exclusive: body|body_json"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(equals="ok")]),
     "missing required arguments: path found in json"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(path="status")]),
     "one of the following is required: equals, one_of, present found in json"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(path="status", equals="ok", present=True)]),
     "parameters are mutually exclusive: equals|one_of|present found in json"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(path="status", equals="ok", matches="ok")]),
     "Unsupported parameters for (basic.py) module: json.matches"),
    (dict(kind="http", url="http://127.0.0.1/", retries=0), "retries must be at least 1, got 0"),
    (dict(kind="http", url="http://127.0.0.1/", timeout=0), "timeout must be greater than 0, got 0.0"),
    (dict(kind="http", url="http://127.0.0.1/", interval=-1), "interval must be at least 0, got -1.0"),
    (dict(kind="http", url="http://127.0.0.1/", retries=2, success_threshold=3),
     "success_threshold (3) cannot exceed retries (2)"),
    (dict(kind="http", url="http://127.0.0.1/", initial_delay=5, max_wait=5),
     "initial_delay (5) must be less than max_wait (5)"),
    (dict(kind="http", url="ftp://127.0.0.1/"), "url must be an http:// or https:// URL with a host, got scheme 'ftp'"),
    (dict(kind="http", url="http:///health"), "url must be an http:// or https:// URL with a host"),
    (dict(kind="http", url="http://127.0.0.1:99999/"), "url is not a valid URL: Port out of range 0-65535"),
    (dict(kind="http", url="http://[::1/"), "url is not a valid URL: Invalid IPv6 URL"),
    (dict(kind="http", url="http://127.0.0.1/", status_codes=[200, 42]),
     "status_codes must be HTTP status codes (100-599), got [42]"),
    (dict(kind="http", url="http://127.0.0.1/", body_regex="(unclosed"),
     "body_regex is not a valid regular expression: missing ), unterminated subpattern at position 0"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(path="status", one_of=[])]),
     "json[0].one_of must list at least one value"),
    (dict(kind="http", url="http://127.0.0.1/", json=[dict(path="status", equals=1), dict(path="", equals=1)]),
     "json[1].path must not be empty"),
    (dict(kind="http", url="http://127.0.0.1/", headers={"Bad Name": "x"}),
     "headers: 'Bad Name' is not a valid header name"),
    (dict(kind="http", url="http://127.0.0.1/", headers={"X-Token": "s3cr\nt-value"}),
     "headers: the value of X-Token contains a line break or NUL"),
    (dict(kind="tcp", port=70000), "port must be between 1 and 65535, got 70000"),
    (dict(kind="tcp", port=80, url="http://127.0.0.1/"), "url applies only to kind=http, not kind=tcp"),
    (dict(kind="command", argv=[]), "argv must name a program to run"),
])
def test_invalid_options_are_rejected_with_a_clear_message(capsys, args, message):
    failed, result = run_module(capsys, **args)
    assert failed
    assert message in result["msg"]
    assert "s3cr" not in result["msg"]                   # a header value never, even a broken one
    assert "healthy" not in result                       # rejected before probing anything


# As a collection module, and its documentation ---------------------------------------------


def ansible_env():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", ""))
    return env


def test_runs_as_a_collection_module_through_ansible(server):
    server.script(UNHEALTHY, HEALTHY)
    args = dict(kind="http", url=server.url(), retries=3, interval=0.05,
                json=[dict(path="checks.db.state", equals="up")])
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-m", "shipit.deploy.health_check", "-a", json.dumps(args)],
        cwd=str(REPO_ROOT), env=ansible_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, _, payload = proc.stdout.partition(" => ")
    assert header.strip() == "localhost | SUCCESS"
    result = json.loads(payload)
    assert (result["healthy"], result["attempts"], result["changed"]) == (True, 2, False)
    assert len(server.requests) == 2


def test_documentation_matches_the_argument_spec():
    proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "--json", "shipit.deploy.health_check"],
                          cwd=str(REPO_ROOT), env=ansible_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["shipit.deploy.health_check"]
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert doc["doc"]["attributes"]["diff_mode"]["support"] == "none"
    assert doc["examples"] and doc["return"]["healthy"]

    def compare(documented, spec, where):
        assert sorted(documented) == sorted(spec), where
        for name, option in spec.items():
            described = documented[name]
            for key in ("type", "elements", "choices", "required"):
                assert described.get(key) == option.get(key) or (
                    key == "required" and not described.get(key) and not option.get(key)), (where, name, key)
            if "default" in option:
                assert described.get("default") == option["default"], (where, name, "default")
            if "options" in option:
                compare(described["suboptions"], option["options"], "%s.%s" % (where, name))

    compare(doc["doc"]["options"], health_check_body.argument_spec(), "options")
