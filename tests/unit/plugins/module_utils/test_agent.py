"""The host agent (module_utils/_agent.py): a plan of the collection's modules in one python start, each step
the module's own body; the controller's validation of the steps (plugins/action/agent.py); and the zipapp run
for real by a separate python3, as the host runs it."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.shipit.deploy.plugins.action.agent import build_zipapp, validate_step
from ansible_collections.shipit.deploy.plugins.module_utils import _agent, _ledger, _lock
from lab.images import compose_plugin_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compose_testlib import fake_docker_cli, image_id, make_archive  # noqa: E402


def fake_bodies(log):
    """Two module bodies as the agent sees them: each ends with exit_json or fail_json, as a module does."""
    def good(module):
        log.append((module.params["n"], module.check_mode))
        module.exit_json(changed=True, n=module.params["n"])

    def bad(module):
        log.append((module.params["n"], module.check_mode))
        module.fail_json(msg=f"step {module.params['n']} failed", n=module.params["n"])

    bodies = {"good": types.SimpleNamespace(run=good), "bad": types.SimpleNamespace(run=bad)}

    def load(module):
        if module not in bodies:
            raise _agent.PlanError(f"no module {module}; nothing was run")
        return bodies[module]
    return load


def test_a_failed_step_stops_the_plan_but_always_steps_still_run():
    log = []
    answer = _agent.run_plan({"steps": [
        {"name": "one", "module": "good", "params": {"n": 1}},
        {"name": "two", "module": "bad", "params": {"n": 2}},
        {"name": "three", "module": "good", "params": {"n": 3}},
        {"name": "four", "module": "good", "params": {"n": 4}, "always": True},
    ]}, load=fake_bodies(log))
    assert log == [(1, False), (2, False), (4, False)]
    assert (answer["ok"], answer["failed"], answer["changed"]) == (False, "two", True)
    assert [(s["name"], s["ok"], s["result"].get("msg")) for s in answer["steps"]] == [
        ("one", True, None), ("two", False, "step 2 failed"), ("three", None, "skipped: step two failed"),
        ("four", True, None)]
    assert answer["steps"][0]["result"] == {"changed": True, "n": 1} and all(s["seconds"] >= 0 for s in answer["steps"])


def test_check_mode_reaches_every_step_and_an_unknown_module_is_refused_before_any_runs():
    log = []
    assert _agent.run_plan({"check_mode": True, "steps": [{"module": "good", "params": {"n": 1}}]},
                           load=fake_bodies(log))["ok"]
    assert log == [(1, True)]
    with pytest.raises(_agent.PlanError, match="no module nope; nothing was run"):
        _agent.run_plan({"steps": [{"module": "good", "params": {"n": 2}}, {"module": "nope"}]}, load=fake_bodies(log))
    assert log == [(1, True)]
    with pytest.raises(_agent.PlanError, match="not a module the agent runs"):
        _agent.body("command")


def test_the_controller_validates_each_step_against_the_module_spec_before_anything_runs():
    name, module, always, params, secrets = validate_step(0, {
        "name": "lock", "module": "deploy_lock", "args": {"app": "pulse", "token": "t1", "ttl": "60"}})
    assert (name, module, always) == ("lock", "deploy_lock", False)
    # The module's defaults and types, as AnsibleModule gives them.
    assert params["ttl"] == 60 and params["lock_dir"] == "/var/lib/shipit" and params["state"] == "present"
    with pytest.raises(AnsibleActionFail, match=r"step lock \(deploy_lock\): .*state.*present.*token.*nothing was run"):
        validate_step(0, {"name": "lock", "module": "deploy_lock", "args": {"app": "pulse"}})
    with pytest.raises(AnsibleActionFail, match="unsupported parameters: colour. Supported parameters include: app, drain_timeout"):
        validate_step(0, {"module": "traffic", "args": {"app": "pulse", "slot": "blue", "colour": "red"}})
    with pytest.raises(AnsibleActionFail, match="value of slot must be one of: blue, green"):
        validate_step(0, {"module": "traffic", "args": {"app": "pulse", "slot": "purple"}})
    with pytest.raises(AnsibleActionFail, match="step 2 of shipit.deploy.agent needs module"):
        validate_step(1, {"args": {}})
    with pytest.raises(AnsibleActionFail, match="not a module the agent runs"):
        validate_step(0, {"module": "shell", "args": {}})


def test_the_values_of_no_log_options_are_known_to_the_controller():
    *_, secrets = validate_step(0, {"module": "health_check", "args": {
        "kind": "http", "url": "http://127.0.0.1/health", "headers": {"Authorization": "Bearer s3cret"}}})
    assert secrets == {"Bearer s3cret"}


def test_the_zipapp_is_the_same_bytes_for_the_same_code():
    assert build_zipapp() == build_zipapp()


def run_agent(pyz, plan):
    out = subprocess.run([sys.executable, str(pyz)], input=json.dumps(plan), capture_output=True, text=True,
                         check=False, env={"PATH": os.environ["PATH"]})
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def test_the_zipapp_runs_the_modules_bodies_in_a_plain_python(tmp_path):
    """The deploy's bookkeeping (lock, stage, ledger, unlock with the audit line) as the agent runs it on a
    host: a python3 without Ansible, the zipapp alone on its path."""
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    state = tmp_path / "state"
    lock = {"app": "pulse", "lock_dir": str(state), "token": "run-1", "state": "present", "who": "ci",
            "operation": "deploy", "version": "1.0.0", "release_id": "r1", "ttl": 60, "wait": 0.0,
            "fail_when_held": False, "read_ledger": True, "stage": None, "replace_interrupted": False,
            "force": False, "done": True, "audit_log": None, "reason": None, "result": None, "summary": None,
            "details": None, "holder_info": None, "break_token": None, "ci_url": None, "controller": "c1"}
    rc, answer = run_agent(pyz, {"steps": [{"name": "lock", "module": "deploy_lock", "params": lock}]})
    assert rc == 0 and answer["ok"], answer
    assert answer["steps"][0]["result"]["acquired"] is True
    assert answer["steps"][0]["result"]["ledger"] == {"live": None, "previous_good": None}

    ledger = {"app": "pulse", "ledger_dir": str(state), "release_id": "r1", "status": "live",
              "previous_status": "good", "version": "1.0.0", "checksum": "sha256:ab", "reason": None,
              "info": None, "keep_failed": 5, "keep_pruned": 20}
    unlock = dict(lock, state="absent", result="deployed", summary="ok")
    rc, answer = run_agent(pyz, {"steps": [
        {"name": "stage", "module": "deploy_lock", "params": dict(lock, stage="verify")},
        {"name": "record", "module": "release_ledger", "params": ledger},
        {"name": "unlock", "module": "deploy_lock", "params": unlock, "always": True}]})
    assert rc == 0 and [s["ok"] for s in answer["steps"]] == [True, True, True], answer
    live = _ledger.live(_ledger.load(_ledger.ledger_path(str(state), "pulse"), "pulse"))
    assert (live["release_id"], live["version"]) == ("r1", "1.0.0")
    assert _lock.status(_lock.app_dir(str(state), "pulse")) == (None, None)
    audit = (state / _lock.AUDIT_FILE).read_text().splitlines()
    assert [json.loads(line)["result"] for line in audit] == ["started", "deployed"]


def test_a_failed_step_in_the_zipapp_still_runs_the_always_steps(tmp_path):
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    state = tmp_path / "state"
    (state / "pulse").mkdir(parents=True)
    (state / "pulse" / "ledger.json").write_text("{not json")
    ledger = {"app": "pulse", "ledger_dir": str(state), "release_id": "r1", "status": "live",
              "previous_status": "good", "version": "1.0.0", "checksum": None, "reason": None, "info": None,
              "keep_failed": 5, "keep_pruned": 20}
    rc, answer = run_agent(pyz, {"steps": [
        {"name": "record", "module": "release_ledger", "params": ledger},
        {"name": "again", "module": "release_ledger", "params": ledger},
        {"name": "always", "module": "release_ledger", "params": dict(ledger, ledger_dir=str(tmp_path / "other")),
         "always": True}]})
    assert rc == 1 and answer["failed"] == "record"
    assert "recording release r1 of pulse as live" in answer["steps"][0]["result"]["msg"]
    assert [s["ok"] for s in answer["steps"]] == [False, None, True]


@pytest.fixture
def http_server():
    """A loopback server: /ok answers 200 with JSON, /down 503; it counts the requests."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            body = json.dumps({"status": "healthy" if self.path == "/ok" else "unhealthy"}).encode()
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_health_checks_run_in_the_zipapp_with_the_standard_library_alone(tmp_path, http_server):
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())

    def check(name, path, **extra):
        *_, params, _secrets = validate_step(0, {"module": "health_check", "args": dict(
            kind="http", url=http_server + path, retries=2, interval=0.1, timeout=2,
            json=[{"path": "status", "equals": "healthy"}], **extra)})
        return {"name": name, "module": "health_check", "params": params}

    rc, answer = run_agent(pyz, {"steps": [check("up", "/ok"), check("down", "/down"), check("never", "/ok")]})
    assert rc == 1 and answer["failed"] == "down"
    up, down, never = (s["result"] for s in answer["steps"])
    assert up["healthy"] is True and up["attempts"] == 1
    assert down["healthy"] is False and "got 503" in down["msg"] and '"unhealthy"' in down["msg"]
    assert answer["steps"][2]["ok"] is None and "attempts" not in never
    closed = check("closed", "/ok")
    closed["params"]["url"] = "http://127.0.0.1:9/health"
    rc, answer = run_agent(pyz, {"steps": [closed]})
    assert rc == 1 and "Connection refused" in answer["steps"][0]["result"]["msg"], answer


def test_a_compose_release_runs_in_the_zipapp_images_files_current_and_prune(tmp_path):
    """The compose_stack role's host side as the agent runs it: images loaded and pinned, the release's files
    (the Compose file checked by the real Compose v2), current, the old release pruned; check mode first.
    The engine is the fake Docker CLI; `docker compose` goes to the Compose binary."""
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_zipapp())
    fake_cli, fake = fake_docker_cli(tmp_path)
    docker = tmp_path / "docker-wrapper"
    docker.write_text(f'#!/bin/sh\n[ "$1" = compose ] && shift && exec {compose_plugin_binary()} "$@"\n'
                      f'exec {fake_cli} "$@"\n')
    docker.chmod(0o755)
    archive = make_archive(tmp_path / "pulse.image.tar", "pulse-1.1.0", tags=["pulse:1.1.0"])
    db = fake.add_image("postgres", tags=["postgres:15"])
    old = fake.add_image("pulse-1.0.0", tags=["pulse:1.0.0"])
    root = tmp_path / "srv"
    (root / "pulse" / "releases" / "r0").mkdir(parents=True)
    (root / "pulse" / "releases" / "r0" / "images.json").write_text(json.dumps({"pulse": old, "db": db}))
    pins = {"pulse": image_id("pulse-1.1.0"), "db": db}
    release = {"app_dir": str(root / "pulse"), "release_id": "r1", "host_label": "stack1", "docker_cli": str(docker)}

    def plan(compose="services:\n  pulse:\n    image: ${PULSE_IMAGE}\n", check=False):
        images = [{"service": "pulse", "source": "load", "archive": str(archive)},
                  {"service": "db", "source": "local", "ref": "postgres:15"}]
        steps = [("images", "compose_images", {"docker_cli": str(docker), "images": images}),
                 ("stage", "compose_release", dict(release, images=pins, compose_content=compose,
                                                   env_content=f"PULSE_IMAGE={pins['pulse']}\n")),
                 ("live", "compose_release", dict(release, state="live", check_mode_staged=True)),
                 ("prune", "compose_prune", {"root": str(root), "app": "pulse", "keep": 1, "protect": ["r1"],
                                             "docker_cli": str(docker)})]
        entries = []
        for name, module, args in steps:
            *_, params, _secrets = validate_step(0, {"name": name, "module": module, "args": args})
            entries.append({"name": name, "module": module, "params": params})
        return {"check_mode": check, "steps": entries}

    def results(answer):
        return {s["name"]: s["result"] for s in answer["steps"]}

    rc, answer = run_agent(pyz, plan(check=True))
    assert rc == 0 and answer["ok"] and answer["changed"], answer
    predicted = results(answer)
    assert predicted["images"]["actions"] == {"pulse": "loaded", "db": "present"}
    assert predicted["stage"]["compose_changed"] and predicted["live"]["switched"]
    # r1 is not on the host yet, so r0 is the newest release there and is kept.
    assert predicted["prune"]["kept_releases"] == ["r0"] and predicted["prune"]["removed_releases"] == []
    assert sorted(os.listdir(root / "pulse" / "releases")) == ["r0"] and not fake.calls(["load"])

    rc, answer = run_agent(pyz, plan())
    assert rc == 0 and answer["ok"] and [s["changed"] for s in answer["steps"]] == [True, True, True, True], answer
    done = results(answer)
    assert done["images"]["images"] == pins and done["stage"]["current"] is None
    assert os.readlink(root / "pulse" / "current") == "releases/r1"
    assert json.loads((root / "pulse" / "releases" / "r1" / "images.json").read_text()) == pins
    assert done["prune"]["removed_releases"] == ["r0"] and done["prune"]["removed_images"] == [old]
    assert sorted(os.listdir(root / "pulse" / "releases")) == ["r1"] and old not in fake.load_state()["images"]

    rc, answer = run_agent(pyz, plan())
    assert rc == 0 and not answer["changed"], answer

    # An invalid Compose file is not installed, and the plan stops there: the steps after it are skipped.
    rc, answer = run_agent(pyz, plan(compose="services:\n  pulse: [unclosed\n"))
    assert rc == 1 and answer["failed"] == "stage", answer
    assert "is not valid, so it was not installed" in results(answer)["stage"]["msg"]
    assert [s["ok"] for s in answer["steps"]] == [True, False, None, None]
    assert "unclosed" not in (root / "pulse" / "releases" / "r1" / "compose.yaml").read_text()
