# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.front_proxy: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import os

from ansible_collections.shipit.deploy.plugins.module_utils import _files, _proxy


SETTINGS = ("timeout_connect", "timeout_client", "timeout_server", "check_interval", "retry_after", "socket", "config",
            "state_dir")


def settings_of(params):
    return {name: params[name] for name in SETTINGS}


def install_config(module, changes, config_path, text, check):
    """Write the config when it differs (after haproxy -c accepts it); True when it changed (or would)."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    if current == text:
        return False
    # In check mode on a new host HAProxy (or the files the config reads) may not be there yet: nothing to check with.
    if not check or (module.get_bin_path("haproxy") and os.path.isfile(_proxy.page_path(module.params["app"]))
                     and os.path.isfile(_proxy.map_path())):
        problem = _proxy.check_config(module.run_command, config_path, text)
        if problem:
            module.fail_json(msg=f"the HAProxy config rendered for {module.params['app']} does not pass haproxy -c, "
                                 f"so it was not installed: {problem}; nothing was changed", changes=changes)
    foreign = current is not None and not current.startswith(_proxy.MARKER)
    if foreign and not os.path.exists(_proxy.FOREIGN_COPY) and record(changes, f"kept the previous config as {_proxy.FOREIGN_COPY}", check):
        _files.write_file_atomic(_proxy.FOREIGN_COPY, current.encode(), 0o644)
    if record(changes, f"wrote {config_path}", check):
        _files.write_file_atomic(config_path, text.encode(), 0o644)
    return True


def write_page(changes, path, data, check):
    """A file of the proxy (the maintenance page, the maintenance map), written when it differs."""
    if read_bytes(path) != data and record(changes, f"wrote {path}", check):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        _files.write_file_atomic(path, data, 0o644)


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def record(changes, what, check):
    changes.append(what)
    return not check


def ensure_installed(module, changes, check):
    """HAProxy from Debian's package, when it is missing; an apt index is fetched only when the package is unknown."""
    if module.get_bin_path("haproxy") or not record(changes, "installed haproxy", check):
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "haproxy"]
    rc, out, err = module.run_command(argv, environ_update=env)
    if rc != 0:
        run_checked(module, ["apt-get", "update", "-q"], "updating the apt index to install haproxy")
        rc, out, err = module.run_command(argv, environ_update=env)
    if rc != 0:
        module.fail_json(msg=f"installing haproxy failed (apt-get install haproxy, exit {rc}): "
                             f"{(err or out).strip()[-2000:]}; nothing else was changed", changes=changes)


def ensure_running(module, changes, reload, check):
    rc, out, _err = module.run_command(["systemctl", "show", "--property=ActiveState,UnitFileState", "haproxy.service"])
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
    if state.get("UnitFileState") != "enabled" and record(changes, "enabled haproxy", check):
        run_checked(module, ["systemctl", "enable", "haproxy.service"], "enabling haproxy")
    if state.get("ActiveState") != "active":
        if record(changes, "started haproxy", check):
            run_checked(module, ["systemctl", "restart", "haproxy.service"], "starting haproxy")
        return True
    if reload and record(changes, "reloaded haproxy", check):
        run_checked(module, ["systemctl", "reload", "haproxy.service"], "reloading haproxy")
    return False


def run_checked(module, argv, what):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"{what} failed ({' '.join(argv)}, exit {rc}): {(err or out).strip()[-2000:]}")


SPEC = dict(
    argument_spec=dict(
        app=dict(type="str", required=True),
        http_port=dict(type="int", required=True),
        https_port=dict(type="int"),
        tls_certificate=dict(type="path"),
        slot_ports=dict(type="dict", required=True),
        health_path=dict(type="str", default="/health"),
        maintenance=dict(type="bool"),
        maintenance_page=dict(type="str"),
        retry_after=dict(type="int", default=30),
        timeout_connect=dict(type="float", default=2),
        timeout_client=dict(type="float", default=30),
        timeout_server=dict(type="float", default=30),
        check_interval=dict(type="float", default=0.5),
        config=dict(type="path", default=_proxy.CONFIG),
        state_dir=dict(type="path", default=_proxy.STATE_DIR),
        socket=dict(type="path", default=_proxy.SOCKET),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    p = module.params
    check = module.check_mode
    settings = settings_of(p)
    try:
        apps = _proxy.load_apps(p["state_dir"])
    except _proxy.ProxyError as exc:
        module.fail_json(msg=f"{exc}: nothing was changed")
    before = apps.get(p["app"], {})
    slot_ports = p["slot_ports"]
    try:
        slot_ports = {str(slot): int(port) for slot, port in slot_ports.items()}
    except (TypeError, ValueError):
        pass  # reported by app_problems, naming the setting
    spec = dict(
        app=p["app"], http_port=p["http_port"], https_port=p["https_port"], tls_certificate=p["tls_certificate"],
        slot_ports=slot_ports, health_path=p["health_path"], live_slot=before.get("live_slot"),
        maintenance=before.get("maintenance", False) if p["maintenance"] is None else p["maintenance"],
    )
    problems = _proxy.settings_problems(settings) + _proxy.app_problems(spec, apps.values())
    if problems:
        module.fail_json(msg=f"invalid proxy settings of {p['app']}: {'; '.join(problems)}; nothing was changed")

    changes = []
    ensure_installed(module, changes, check)
    page = (p["maintenance_page"] or _proxy.DEFAULT_PAGE.format(app=p["app"])).encode()
    write_page(changes, _proxy.page_path(p["app"]), page, check)
    if spec != before and record(changes, f"recorded the proxy settings of {p['app']}", check):
        _proxy.save_app(p["state_dir"], spec)
    try:
        stored = _proxy.load_settings(p["state_dir"])
    except _proxy.ProxyError:
        stored = None
    if stored != settings and record(changes, "recorded the proxy-wide settings", check):
        _proxy.save_settings(p["state_dir"], settings)
    apps[p["app"]] = spec
    # Read by the config (haproxy -c too): the apps in maintenance.
    write_page(changes, _proxy.map_path(), _proxy.render_map(apps).encode(), check)
    config_changed = install_config(module, changes, p["config"], _proxy.render(settings, apps), check)
    started = ensure_running(module, changes, config_changed, check)
    if spec["maintenance"] != before.get("maintenance", False) and not (config_changed or started):
        # The running HAProxy learns it at once from its runtime API; a reload or start read the map file.
        if record(changes, f"{'put' if spec['maintenance'] else 'took'} {p['app']} "
                           f"{'in' if spec['maintenance'] else 'out of'} maintenance", check):
            try:
                _proxy.set_maintenance(_proxy.Runtime(p["socket"]), p["app"], spec["maintenance"])
            except _proxy.ProxyError as exc:
                module.fail_json(msg=f"setting the maintenance of {p['app']}: {exc}", changes=changes)
    live = spec["live_slot"]
    module.exit_json(changed=bool(changes), changes=changes, live_slot=live,
                     idle_slot=_proxy.other(live) if live else _proxy.SLOTS[0], slot_ports=spec["slot_ports"],
                     maintenance=spec["maintenance"], maintenance_before=before.get("maintenance", False),
                     config_changed=config_changed)
