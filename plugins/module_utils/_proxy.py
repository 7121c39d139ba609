# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The front proxy of a host (HAProxy): one frontend and one backend per app, two slots (blue, green) per app.

Private to shipit.deploy (used by the front_proxy and traffic modules), standard library only.

What the proxy serves is kept on the host, one JSON document per app (``<state_dir>/apps/<app>.json``: its
ports, its health path, the live slot, maintenance) and one of the proxy-wide settings
(``<state_dir>/settings.json``), and the whole of ``haproxy.cfg`` is rendered from those documents by render():
the config on disk always says what the running proxy does, so a reload or a restart of HAProxy keeps the
traffic where it is. A switch of traffic is made on HAProxy's runtime API (its admin
socket, no reload: nothing is dropped) and then written to the app's document and the config.

Each app's backend has a server per slot and, for each, a ``backup`` twin on the same address (the
fallback): after a switch the old slot's fallback stays ready for the bake, so when HAProxy's own checks find
the new slot down, requests go to the old release until the deploy switches back.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time

from ansible_collections.shipit.deploy.plugins.module_utils import _files
from ansible_collections.shipit.deploy.plugins.module_utils._release import SLOTS
CONFIG = "/etc/haproxy/haproxy.cfg"
STATE_DIR = "/var/lib/shipit/proxy"
SOCKET = "/run/haproxy/admin.sock"
PAGES_DIR = "/etc/haproxy/shipit"
# The first line of every config render() writes: a config without it is not ours (kept once, see below).
MARKER = "# Managed by shipit.deploy (shipit.deploy.front_proxy)"
# A config that was not ours is kept here once before the first write.
FOREIGN_COPY = CONFIG + ".before-shipit"
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body><h1>Down for maintenance</h1><p>{app} is being updated. Please try again in a moment.</p></body></html>
"""


class ProxyError(Exception):
    pass


def other(slot):
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


# ---- settings --------------------------------------------------------------------------------------------
def settings_problems(settings):
    """What is wrong with the proxy-wide settings, one line each, naming the setting."""
    problems = []
    for name in ("timeout_connect", "timeout_client", "timeout_server", "check_interval"):
        value = settings.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            problems.append(f"{name} must be a number of seconds above 0, got {value!r}")
    retry_after = settings.get("retry_after")
    if not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0:
        problems.append(f"retry_after must be a whole number of seconds, got {retry_after!r}")
    return problems


def app_problems(spec, others=()):
    """What is wrong with an app's proxy settings, one line each, naming the setting. others: the other apps
    the proxy serves on the host, whose ports the app must not take."""
    problems = []
    app = spec.get("app")
    if not isinstance(app, str) or not APP_NAME.match(app):
        return [f"app must be a plain name (letters, digits, '.', '_', '-'), got {app!r}"]

    def port(name, value, optional=False):
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            problems.append(f"{name} must be a TCP port (1-65535), got {value!r}")
            return None
        return value

    ports = {}
    for name, value, optional in (("http_port", spec.get("http_port"), False),
                                  ("https_port", spec.get("https_port"), True)):
        if port(name, value, optional) is not None:
            ports[name] = value
    slot_ports = spec.get("slot_ports")
    if not isinstance(slot_ports, dict) or sorted(slot_ports) != sorted(SLOTS):
        problems.append(f"slot_ports must map each slot ({', '.join(SLOTS)}) to a port, got {slot_ports!r}")
    else:
        for slot in SLOTS:
            if port(f"slot_ports.{slot}", slot_ports[slot]) is not None:
                ports[f"slot_ports.{slot}"] = slot_ports[slot]
    by_port = {}
    for name, value in ports.items():
        by_port.setdefault(value, []).append(name)
    problems.extend(f"{' and '.join(names)} are the same port {value}: each needs its own"
                    for value, names in sorted(by_port.items()) if len(names) > 1)
    for other_spec in others:
        if other_spec.get("app") == app:
            continue
        taken = {other_spec.get("http_port"), other_spec.get("https_port"),
                 *(other_spec.get("slot_ports") or {}).values()} - {None}
        problems.extend(f"{name} {value} is already a port of the app {other_spec['app']} on this proxy"
                        for name, value in ports.items() if value in taken)
    if (spec.get("https_port") is None) != (not spec.get("tls_certificate")):
        problems.append("https_port and tls_certificate go together: give both (TLS) or neither")
    cert = spec.get("tls_certificate")
    if cert and not (isinstance(cert, str) and os.path.isabs(cert) and os.path.isfile(cert)):
        problems.append(f"tls_certificate {cert!r} is not a file on the host (a PEM with the certificate and its key)")
    path = spec.get("health_path")
    if not isinstance(path, str) or not re.match(r"^/[!-~]*$", path):
        problems.append(f"health_path must be a URL path starting with '/', without spaces, got {path!r}")
    if spec.get("live_slot") not in (None,) + SLOTS:
        problems.append(f"live_slot must be one of {', '.join(SLOTS)}, got {spec.get('live_slot')!r}")
    return problems


# ---- the apps' documents ---------------------------------------------------------------------------------
def state_path(state_dir, app):
    return os.path.join(state_dir, "apps", f"{app}.json")


def load_apps(state_dir):
    """{app: spec} of every app the proxy of this host serves."""
    apps = {}
    state_dir = os.path.join(state_dir, "apps")
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return apps
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(state_dir, name)
        try:
            with open(path, encoding="utf-8") as handle:
                spec = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ProxyError(f"cannot read the proxy settings {path}: {exc}") from exc
        if not isinstance(spec, dict) or spec.get("app") != name[:-len(".json")]:
            raise ProxyError(f"{path} is not the proxy settings of the app {name[:-len('.json')]}")
        apps[spec["app"]] = spec
    return apps


def save_app(state_dir, spec):
    os.makedirs(os.path.join(state_dir, "apps"), mode=0o750, exist_ok=True)
    _files.write_json_atomic(state_path(state_dir, spec["app"]), spec, 0o640)


def load_settings(state_dir):
    path = os.path.join(state_dir, "settings.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ProxyError(f"the proxy of this host has no settings yet ({path}): run shipit.deploy.front_proxy first") from None
    except (OSError, ValueError) as exc:
        raise ProxyError(f"cannot read the proxy settings {path}: {exc}") from exc


def save_settings(state_dir, settings):
    os.makedirs(state_dir, mode=0o750, exist_ok=True)
    _files.write_json_atomic(os.path.join(state_dir, "settings.json"), settings, 0o640)


def check_config(run_command, config_path, text):
    """What haproxy -c says of the config text (checked as a file beside config_path), or None when it passes."""
    fd, candidate = tempfile.mkstemp(prefix=".haproxy.cfg.", suffix=".shipit", dir=os.path.dirname(config_path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        rc, out, err = run_command(["haproxy", "-c", "-f", candidate])
    finally:
        os.unlink(candidate)
    if rc != 0:
        return ((err or out).strip().replace(candidate, config_path))[-2000:] or f"haproxy -c exited {rc}"
    return None


def page_path(app, pages_dir=PAGES_DIR):
    return os.path.join(pages_dir, f"{app}-maintenance.html")


def map_path(pages_dir=PAGES_DIR):
    """The map of the apps in maintenance (``<app> 1`` lines): changed at runtime, so maintenance needs no reload."""
    return os.path.join(pages_dir, "maintenance.map")


def render_map(apps):
    return "".join(f"{app} 1\n" for app, spec in sorted(apps.items()) if spec.get("maintenance"))


# ---- the config ------------------------------------------------------------------------------------------
def _seconds(value):
    return f"{int(round(value * 1000))}ms"


def render(settings, apps):
    """haproxy.cfg for the proxy-wide settings and every app (a dict app -> spec)."""
    lines = [
        MARKER + ": every app of this host, rendered from " + settings.get("state_dir", STATE_DIR) + ".",
        "# Do not edit: the next deploy writes it again. A switch of traffic changes only which server is enabled.",
        "global",
        "    log /dev/log local0",
        "    chroot /var/lib/haproxy",
        # expose-fd listeners: a reload hands the listening sockets over, no connection is refused meanwhile.
        f"    stats socket {settings.get('socket', SOCKET)} mode 660 level admin expose-fd listeners",
        "    stats timeout 30s",
        "    user haproxy",
        "    group haproxy",
        "    daemon",
        "",
        "defaults",
        "    log global",
        "    mode http",
        "    option httplog",
        "    option dontlognull",
        "    option forwardfor",
        # A request whose connection to a slot fails (a slot stopping, a fallback taking over) is sent again,
        # to another server: nothing had reached the app yet.
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure empty-response",
        f"    timeout connect {_seconds(settings['timeout_connect'])}",
        f"    timeout client {_seconds(settings['timeout_client'])}",
        f"    timeout server {_seconds(settings['timeout_server'])}",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        f"    default-server check inter {_seconds(settings['check_interval'])} fall 2 rise 1",
    ]
    pages_dir = settings.get("pages_dir", PAGES_DIR)
    for app, spec in sorted(apps.items()):
        lines += ["", f"frontend {app}", f"    bind :{spec['http_port']}"]
        if spec.get("https_port"):
            lines.append(f"    bind :{spec['https_port']} ssl crt {spec['tls_certificate']}")
        # In maintenance while the map lists the app (render_map; the runtime API adds and removes it).
        lines.append(f'    http-request return status 503 content-type "text/html; charset=utf-8" '
                     f'file {page_path(app, pages_dir)} hdr Retry-After {int(settings["retry_after"])} '
                     f'if {{ str({app}),map({map_path(pages_dir)}) -m found }}')
        lines += [f"    default_backend {app}", "", f"backend {app}",
                  f"    option httpchk GET {spec['health_path']}", "    http-check expect status 200"]
        for slot in SLOTS:
            enabled = spec.get("live_slot") == slot
            lines.append(f"    server {slot} 127.0.0.1:{spec['slot_ports'][slot]}{'' if enabled else ' disabled'}")
        for slot in SLOTS:
            lines.append(f"    server {slot}_fallback 127.0.0.1:{spec['slot_ports'][slot]} backup disabled")
    return "\n".join(lines) + "\n"


# ---- the runtime API -------------------------------------------------------------------------------------
class Runtime:
    """HAProxy's admin socket: one command per connection, its answer as text."""

    def __init__(self, path=SOCKET, timeout=5.0):
        self.path = path
        self.timeout = timeout

    def command(self, line):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise ProxyError(f"HAProxy's admin socket {self.path} did not answer {line.split(' ', 1)[0]!r}: {exc}") from exc
        finally:
            sock.close()
        answer = b"".join(chunks).decode(errors="replace").strip()
        refusals = ("no such", "unknown", "require", "key not found")
        if answer and not line.startswith("show ") and answer.lower().startswith(refusals):
            raise ProxyError(f"HAProxy refused {line!r}: {answer}")
        return answer

    def servers(self, backend):
        """{server: {"scur": current sessions, "status": UP/DOWN/MAINT/...}} of the backend."""
        text = self.command("show stat")
        header, *rows = [line for line in text.splitlines() if line]
        names = header.lstrip("# ").split(",")
        found = {}
        for row in rows:
            values = dict(zip(names, row.split(",")))
            if values.get("pxname") == backend and values.get("svname") not in ("FRONTEND", "BACKEND"):
                found[values["svname"]] = {"scur": int(values.get("scur") or 0), "status": values.get("status", ""),
                                           "hrsp_5xx": int(values.get("hrsp_5xx") or 0)}
        if not found:
            raise ProxyError(f"HAProxy has no backend {backend} (is the proxy running with shipit's config?)")
        return found

    def set_state(self, backend, server, state):
        self.command(f"set server {backend}/{server} state {state}")
        if state == "ready":
            # Checked already by the deploy: serve now, not after HAProxy's next check.
            self.command(f"set server {backend}/{server} health up")


def set_maintenance(runtime, app, on, pages_dir=PAGES_DIR):
    """Serve the maintenance page for every request of the app (on), or the app (off), at once."""
    path = map_path(pages_dir)
    listed = any(line.split()[1:2] == [app] for line in runtime.command(f"show map {path}").splitlines())
    if on and not listed:
        runtime.command(f"add map {path} {app} 1")
    elif not on and listed:
        runtime.command(f"del map {path} {app}")


def move_traffic(runtime, app, to, fallback):
    """New requests go to slot ``to`` from now on; the other slot gets none (its in-flight requests finish).
    With fallback the other slot's backup twin stays ready: HAProxy sends requests there if ``to`` goes down."""
    old = other(to)
    runtime.set_state(app, to, "ready")
    runtime.set_state(app, old, "maint")
    runtime.set_state(app, f"{old}_fallback", "ready" if fallback else "maint")
    runtime.set_state(app, f"{to}_fallback", "maint")


def drain(runtime, app, slot, timeout, sleep=time.sleep, clock=time.monotonic):
    """Wait until the slot's server has no request in flight, at most timeout seconds; (drained, seconds)."""
    start = clock()
    while True:
        if runtime.servers(app)[slot]["scur"] == 0:
            return True, clock() - start
        if clock() - start >= timeout:
            return False, clock() - start
        sleep(0.05)


# ---- the switches, as the traffic module (or a host agent) makes them ----------------------------------------
def _served(state_dir, app):
    """(apps, settings, the app's spec, its runtime) of an app the proxy serves; ProxyError otherwise."""
    try:
        apps, settings = load_apps(state_dir), load_settings(state_dir)
    except ProxyError as exc:
        raise ProxyError(f"{exc}: nothing was changed") from None
    if app not in apps:
        raise ProxyError(f"the proxy does not serve {app} (no {state_path(state_dir, app)}): run "
                         "shipit.deploy.front_proxy first; nothing was changed")
    return apps, settings, apps[app], Runtime(settings["socket"])


def switch(state_dir, app, slot, fallback, drain_timeout, run_command, check=False, clock=time.monotonic):
    """Move the app's traffic to slot (see the traffic module); the result the module returns."""
    try:
        apps, settings, spec, runtime = _served(state_dir, app)
        servers = runtime.servers(app)
    except ProxyError as exc:
        if check:  # a first deploy in check mode: front_proxy only reported what it would set up
            return dict(live_slot=slot, previous_slot=None, changes=[f"moved the traffic of {app} to {slot}"])
        raise ProxyError(f"moving the traffic of {app}: {exc}") from None
    previous, old = spec.get("live_slot"), other(slot)
    agrees = (servers[slot]["status"] not in ("MAINT", "DRAIN") and servers[old]["status"] == "MAINT"
              and (servers[f"{old}_fallback"]["status"] != "MAINT") == fallback)
    result = dict(live_slot=slot, previous_slot=previous, changes=[])
    if previous == slot and agrees:
        return result
    result["changes"].append(f"moved the traffic of {app} to {slot}" + (f" (from {previous})" if previous else ""))
    if check:
        return result
    apps[app] = spec = dict(spec, live_slot=slot)
    text = render(settings, apps)
    problem = check_config(run_command, settings["config"], text)
    if problem:
        raise ProxyError(f"the HAProxy config with {app} on {slot} does not pass haproxy -c: {problem}; "
                         "nothing was changed")
    try:
        start = clock()
        move_traffic(runtime, app, slot, fallback)
        result["switch_seconds"] = round(clock() - start, 4)
        # The runtime first: the document and the config then say what HAProxy does. Killed in between, the
        # next run's recovery moves the traffic to the release its ledger records live anyway.
        save_app(state_dir, spec)
        _files.write_file_atomic(settings["config"], text.encode(), 0o644)
        drained, seconds = (True, 0.0) if previous in (None, slot) else drain(runtime, app, old, drain_timeout)
    except ProxyError as exc:
        raise ProxyError(f"moving the traffic of {app} to {slot}: {exc}") from None
    return dict(result, drained=drained, drain_seconds=round(seconds, 3))


def settle(state_dir, app, check=False):
    """Take the app's fallback servers out of service (after the bake); the result the module returns."""
    _apps, _settings, spec, runtime = _served(state_dir, app)
    changes = []
    try:
        servers = runtime.servers(app)
        for name in (f"{slot}_fallback" for slot in SLOTS):
            if servers[name]["status"] != "MAINT":
                changes.append(f"took {name} out of service")
                if not check:
                    runtime.set_state(app, name, "maint")
    except ProxyError as exc:
        raise ProxyError(f"taking the fallback of {app} out of service: {exc}") from None
    return dict(live_slot=spec.get("live_slot"), previous_slot=spec.get("live_slot"), changes=changes)
