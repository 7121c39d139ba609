"""compose_images runs as a real collection module (ansible ad-hoc on localhost) against a fake Docker CLI."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compose_testlib import fake_docker_cli, image_id, make_archive, run_module  # noqa: E402


@pytest.fixture()
def docker(tmp_path):
    return fake_docker_cli(tmp_path)


def test_check_mode_predicts_then_the_real_run_loads_then_nothing_changes(tmp_path, docker):
    cli, fake = docker
    archive = make_archive(tmp_path / "pulse.image.tar", "pulse-1.0.0", tags=["pulse:1.0.0"])
    db = fake.add_image("postgres", tags=["postgres:15"])
    args = {"docker_cli": cli, "images": [{"service": "pulse", "source": "load", "archive": str(archive)},
                                          {"service": "db", "source": "local", "ref": "postgres:15"}]}
    predicted = run_module("compose_images", args, check=True)
    assert predicted["changed"] and predicted["actions"] == {"pulse": "loaded", "db": "present"}
    assert not fake.calls(["load"])
    done = run_module("compose_images", args)
    assert done["changed"] and done["images"] == {"pulse": image_id("pulse-1.0.0"), "db": db}
    assert done["engine_version"] == "20.10.24+dfsg1"
    assert len(fake.calls(["load"])) == 1
    for check in (True, False):
        again = run_module("compose_images", args, check=check)
        assert not again["changed"] and again["actions"] == {"pulse": "present", "db": "present"}
    assert len(fake.calls(["load"])) == 1


def test_failure_names_the_services_and_the_reason(docker):
    cli, _fake = docker
    result = run_module("compose_images", {"docker_cli": cli, "images": [
        {"service": "pulse", "source": "load", "archive": "/nowhere/pulse.image.tar"}]})
    assert result["failed"]
    assert result["msg"] == ("making the images of pulse present: the image archive of service pulse is not on "
                             "the host: /nowhere/pulse.image.tar")


def test_bad_arguments_are_refused_by_the_argument_spec(docker):
    cli, _fake = docker
    result = run_module("compose_images", {"docker_cli": cli, "images": [{"service": "x", "source": "fetch"}]})
    assert result["failed"] and "value of source must be one of" in result["msg"]
    twice = run_module("compose_images", {"docker_cli": cli, "images": [
        {"service": "x", "source": "local", "ref": "a:1"}, {"service": "x", "source": "local", "ref": "b:1"}]})
    assert twice["failed"] and "service x is listed twice" in twice["msg"]


def test_an_engine_that_does_not_answer_fails_clearly(tmp_path):
    broken = tmp_path / "docker"
    broken.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n")
    broken.chmod(0o755)
    result = run_module("compose_images", {"docker_cli": str(broken), "images": [
        {"service": "x", "source": "local", "ref": "a:1"}]})
    assert result["failed"]
    assert "asking the Docker engine its version: Cannot connect to the Docker daemon" in result["msg"]
