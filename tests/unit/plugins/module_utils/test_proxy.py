"""The front proxy's config and runtime API, against a real HAProxy (Debian's, scripts/bootstrap installs it) on
loopback ports, with two real HTTP servers as the slots."""

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _proxy


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def spec(**extra):
    return dict(dict(app="pulse", http_port=8080, https_port=None, tls_certificate=None,
                     slot_ports={"blue": 18080, "green": 18081}, health_path="/health", live_slot="blue",
                     maintenance=False), **extra)


@pytest.fixture()
def settings(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing: `apt-get install -y haproxy` (scripts/bootstrap does)", pytrace=False)
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "pulse-maintenance.html").write_text(_proxy.DEFAULT_PAGE.format(app="pulse"))
    (pages / "shop-maintenance.html").write_text(_proxy.DEFAULT_PAGE.format(app="shop"))
    (pages / "maintenance.map").write_text("")
    return dict(timeout_connect=2, timeout_client=30, timeout_server=30, check_interval=0.2, retry_after=30,
                socket=str(tmp_path / "admin.sock"), config=str(tmp_path / "haproxy.cfg"),
                state_dir=str(tmp_path / "state"), pages_dir=str(pages))


# --- settings ---------------------------------------------------------------------------------------------

def test_valid_settings_have_no_problem():
    assert _proxy.app_problems(spec()) == []


@pytest.mark.parametrize("changes, problem", [
    ({"http_port": 70000}, "http_port must be a TCP port (1-65535), got 70000"),
    ({"slot_ports": {"blue": 8080, "green": 18081}}, "http_port and slot_ports.blue are the same port 8080"),
    ({"slot_ports": {"blue": 18080}}, "slot_ports must map each slot (blue, green) to a port"),
    ({"https_port": 8443}, "https_port and tls_certificate go together"),
    ({"https_port": 8443, "tls_certificate": "/nowhere/cert.pem"}, "tls_certificate '/nowhere/cert.pem' is not a file"),
    ({"health_path": "health"}, "health_path must be a URL path starting with '/'"),
    ({"app": "../etc"}, "app must be a plain name"),
])
def test_invalid_settings_are_named(changes, problem):
    problems = _proxy.app_problems(spec(**changes))
    assert any(p.startswith(problem) for p in problems), problems


def test_the_ports_of_another_app_of_the_proxy_are_refused():
    shop = spec(app="shop", http_port=9090, slot_ports={"blue": 19090, "green": 18081})
    assert _proxy.app_problems(shop, [spec()]) == ["slot_ports.green 18081 is already a port of the app pulse on this proxy"]
    assert _proxy.app_problems(spec(), [spec()]) == []  # its own settings are no conflict


def test_bad_proxy_wide_settings_are_named():
    assert _proxy.settings_problems(dict(timeout_connect=0, timeout_client=30, timeout_server="x", check_interval=1,
                                         retry_after=-1)) == [
        "timeout_connect must be a number of seconds above 0, got 0",
        "timeout_server must be a number of seconds above 0, got 'x'",
        "retry_after must be a whole number of seconds, got -1"]


# --- the config -------------------------------------------------------------------------------------------

def test_the_config_passes_haproxy_check_with_tls_and_maintenance(settings, tmp_path):
    cert = tmp_path / "pulse.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=pulse.test", "-days", "2",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "crt.pem")], check=True, capture_output=True)
    cert.write_text((tmp_path / "crt.pem").read_text() + (tmp_path / "key.pem").read_text())
    apps = {"pulse": spec(https_port=8443, tls_certificate=str(cert), maintenance=True),
            "shop": spec(app="shop", http_port=9090, slot_ports={"blue": 19090, "green": 19091}, live_slot=None)}
    text = _proxy.render(settings, apps)
    assert _proxy.check_config(run_command, settings["config"], text) is None
    assert text.startswith(_proxy.MARKER)
    assert f"bind :8443 ssl crt {cert}" in text and "hdr Retry-After 30" in text
    assert _proxy.render_map(apps) == "pulse 1\n"
    assert "    server blue 127.0.0.1:18080\n    server green 127.0.0.1:18081 disabled\n" in text
    # Before its first deploy an app has no live slot: nothing of it takes traffic.
    assert "    server blue 127.0.0.1:19090 disabled\n    server green 127.0.0.1:19091 disabled\n" in text


def test_a_config_haproxy_refuses_is_reported_with_its_reason(settings):
    text = _proxy.render(settings, {"pulse": spec()}).replace("timeout connect", "timeout konnect")
    problem = _proxy.check_config(run_command, settings["config"], text)
    assert problem and "konnect" in problem and settings["config"] in problem


def test_settings_documents_round_trip_and_a_foreign_one_is_refused(settings):
    _proxy.save_app(settings["state_dir"], spec())
    _proxy.save_settings(settings["state_dir"], settings)
    assert _proxy.load_apps(settings["state_dir"]) == {"pulse": spec()}
    assert _proxy.load_settings(settings["state_dir"]) == settings
    with open(_proxy.state_path(settings["state_dir"], "shop"), "w", encoding="utf-8") as handle:
        json.dump(spec(), handle)  # the document of another app under shop's name
    with pytest.raises(_proxy.ProxyError, match="is not the proxy settings of the app shop"):
        _proxy.load_apps(settings["state_dir"])


# --- the runtime API, on a running HAProxy ------------------------------------------------------------------

class Slot(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (the http.server API)
                delay = 1.5 if self.path == "/slow" else 0
                time.sleep(delay)
                body = json.dumps({"version": name}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture()
def proxy(settings):
    slots = {"blue": Slot("blue"), "green": Slot("green")}
    app = spec(http_port=free_port(), slot_ports={name: slot.server_address[1] for name, slot in slots.items()})
    # As front_proxy leaves them; the config without chroot (the test's files are outside /var/lib/haproxy).
    settings = dict(settings, config=settings["config"])
    _proxy.save_app(settings["state_dir"], app)
    _proxy.save_settings(settings["state_dir"], settings)
    text = _proxy.render(settings, {"pulse": app}).replace("    chroot /var/lib/haproxy\n", "")
    with open(settings["config"], "w", encoding="utf-8") as handle:
        handle.write(text)
    process = subprocess.Popen(["haproxy", "-db", "-f", settings["config"]], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    runtime = _proxy.Runtime(settings["socket"])
    deadline = time.monotonic() + 10
    while True:
        try:
            runtime.servers("pulse")
            break
        except _proxy.ProxyError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)
    yield runtime, f"http://127.0.0.1:{app['http_port']}", slots
    process.kill()
    process.wait(10)
    for slot in slots.values():
        slot.shutdown()


def answer(url, path="/"):
    with urllib.request.urlopen(url + path, timeout=5) as response:
        return json.loads(response.read())["version"]


def test_moving_traffic_sends_new_requests_to_the_slot_and_drains_the_other(proxy):
    runtime, url, _slots = proxy
    assert answer(url) == "blue"
    slow = {}
    request = threading.Thread(target=lambda: slow.update(version=answer(url, "/slow")))
    request.start()
    time.sleep(0.3)
    _proxy.move_traffic(runtime, "pulse", "green", fallback=False)
    assert {answer(url) for _ in range(20)} == {"green"}
    drained, seconds = _proxy.drain(runtime, "pulse", "blue", timeout=10)
    request.join(5)
    # The request in flight on blue finished there; the drain waited for it, not for its timeout.
    assert drained and 0.5 < seconds < 5 and slow == {"version": "blue"}
    states = runtime.servers("pulse")
    assert states["blue"]["status"] == "MAINT" and states["green"]["status"] != "MAINT"
    assert states["blue_fallback"]["status"] == "MAINT" and states["green_fallback"]["status"] == "MAINT"


def test_a_switch_moves_the_traffic_records_it_and_a_second_one_changes_nothing(proxy, settings):
    runtime, url, _slots = proxy
    predicted = _proxy.switch(settings["state_dir"], "pulse", "green", True, 5, run_command, check=True)
    assert predicted["changes"] == ["moved the traffic of pulse to green (from blue)"] and answer(url) == "blue"
    result = _proxy.switch(settings["state_dir"], "pulse", "green", True, 5, run_command)
    assert result["changes"] and result["drained"] and result["switch_seconds"] < 1, result
    assert {answer(url) for _ in range(10)} == {"green"}
    assert _proxy.load_apps(settings["state_dir"])["pulse"]["live_slot"] == "green"
    with open(settings["config"], encoding="utf-8") as handle:  # written again: a reload keeps green live
        config = handle.read()
    assert re.search(r"\n    server blue 127\.0\.0\.1:\d+ disabled\n    server green 127\.0\.0\.1:\d+\n", config), config
    assert _proxy.switch(settings["state_dir"], "pulse", "green", True, 5, run_command)["changes"] == []
    assert runtime.servers("pulse")["blue_fallback"]["status"] != "MAINT"
    assert _proxy.settle(settings["state_dir"], "pulse")["changes"] == ["took blue_fallback out of service"]
    assert _proxy.settle(settings["state_dir"], "pulse")["changes"] == []


def test_a_switch_of_an_app_the_proxy_does_not_serve_is_refused(settings):
    _proxy.save_settings(settings["state_dir"], settings)
    with pytest.raises(_proxy.ProxyError, match="the proxy does not serve shop .*nothing was changed"):
        _proxy.switch(settings["state_dir"], "shop", "green", False, 5, run_command)
    # In check mode of a first deploy the proxy was only going to be set up: the switch is reported.
    assert _proxy.switch(settings["state_dir"], "shop", "green", False, 5, run_command, check=True)["changes"] == [
        "moved the traffic of shop to green"]


def test_a_drain_stops_at_its_timeout(proxy):
    runtime, url, _slots = proxy
    request = threading.Thread(target=lambda: answer(url, "/slow"))
    request.start()
    time.sleep(0.3)
    _proxy.move_traffic(runtime, "pulse", "green", fallback=False)
    drained, seconds = _proxy.drain(runtime, "pulse", "blue", timeout=0.3)
    request.join(5)
    assert not drained and 0.3 <= seconds < 1


def test_the_fallback_takes_the_requests_when_the_new_slot_goes_down(proxy):
    runtime, url, slots = proxy
    _proxy.move_traffic(runtime, "pulse", "green", fallback=True)
    assert answer(url) == "green"
    slots["green"].shutdown()
    slots["green"].server_close()
    # HAProxy's checks (every 0.2 s, out after 2) take green out; the fallback (blue) answers meanwhile too:
    # a request whose connection to green fails is sent again, to blue.
    assert {answer(url) for _ in range(30)} == {"blue"}
    _proxy.move_traffic(runtime, "pulse", "blue", fallback=False)
    assert runtime.servers("pulse")["blue_fallback"]["status"] == "MAINT"


def test_maintenance_is_set_and_lifted_at_runtime(proxy, settings):
    runtime, url, _slots = proxy
    _proxy.set_maintenance(runtime, "pulse", True, settings["pages_dir"])
    _proxy.set_maintenance(runtime, "pulse", True, settings["pages_dir"])  # once is enough
    with pytest.raises(urllib.error.HTTPError) as refused:
        answer(url)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "30"
    assert "pulse is being updated" in refused.value.read().decode()
    _proxy.set_maintenance(runtime, "pulse", False, settings["pages_dir"])
    assert answer(url) == "blue"


def test_an_unknown_backend_is_a_clear_error(proxy):
    runtime, _url, _slots = proxy
    with pytest.raises(_proxy.ProxyError, match="HAProxy has no backend shop"):
        runtime.servers("shop")
    with pytest.raises(_proxy.ProxyError, match="HAProxy refused"):
        runtime.set_state("pulse", "purple", "ready")


def test_an_admin_socket_that_does_not_answer_is_a_clear_error(tmp_path):
    with pytest.raises(_proxy.ProxyError, match="did not answer 'show'"):
        _proxy.Runtime(str(tmp_path / "nothing.sock")).servers("pulse")
