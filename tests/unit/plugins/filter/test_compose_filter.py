"""Filters of the compose_stack role: image specs per service, the pinned release model, stack problems."""

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.shipit.deploy.plugins.filter.compose import (
    compose_image_specs, compose_pin, compose_problems, compose_running_slot)

PULSE = "sha256:" + "a" * 64
DB = "sha256:" + "b" * 64
DEFINITION = {
    "services": {
        "pulse": {"image": "pulse", "build": {"context": "."}, "depends_on": {"db": {"condition": "service_healthy"}}},
        "db": {"image": "postgres:15", "init": False,
               "healthcheck": {"test": ["CMD", "pg_isready"], "interval": "1s", "start_interval": "1s"}},
    },
    "volumes": {"data": {}},
}
DEFAULTS = {"init": True, "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}}


def test_image_specs_fill_sources_and_refs():
    specs = compose_image_specs(DEFINITION, {"pulse": {"archive": "/dist/pulse-1.1.0.image.tar"}})
    assert specs == [
        {"service": "db", "source": "pull", "ref": "postgres:15"},
        {"service": "pulse", "source": "load", "archive": "/dist/pulse-1.1.0.image.tar"},
    ]
    built = compose_image_specs(DEFINITION, {"pulse": {"context": "/srv/src"}}, default_source="local")
    assert built == [{"service": "db", "source": "local", "ref": "postgres:15"},
                     {"service": "pulse", "source": "build", "context": "/srv/src", "ref": "pulse"}]


def test_image_specs_name_the_shipped_archives_and_their_ids():
    specs = compose_image_specs(DEFINITION, {"pulse": {"archive": "/dist/p.tar"}, "db": {"archive": "/dist/db.tar"}},
                                staging_dir="/srv/pulse/.incoming", archive_ids={"pulse": PULSE})
    assert specs == [
        {"service": "db", "source": "load", "archive": "/srv/pulse/.incoming/db.image.tar"},
        {"service": "pulse", "source": "load", "archive": "/srv/pulse/.incoming/pulse.image.tar", "id": PULSE},
    ]


@pytest.mark.parametrize("definition, images, message", [
    ({}, {}, "has no services"),
    ({"services": {}}, {}, "has no services"),
    (DEFINITION, {"web": {"archive": "/x"}}, "services the Compose definition does not have: web"),
    (DEFINITION, {"pulse": {"archive": "/x", "tag": "1"}}, "unknown keys: tag"),
    (DEFINITION, {"pulse": {"source": "fetch"}}, "must be one of load, pull, build, local"),
    (DEFINITION, {"pulse": {"source": "load"}}, "no archive is given"),
    ({"services": {"x": {}}}, {}, "service x has no image"),
    ({"services": {"bad name": {}}}, {}, "is not valid"),
])
def test_image_specs_refuse_what_cannot_be_pinned(definition, images, message):
    with pytest.raises(AnsibleFilterError, match=message):
        compose_image_specs(definition, images)


def test_pin_sets_ids_project_and_defaults_without_touching_the_input():
    before = json.dumps(DEFINITION, sort_keys=True)
    pinned = compose_pin(DEFINITION, "pulse", {"pulse": PULSE, "db": DB}, DEFAULTS, "20.10.24+dfsg1")
    assert json.dumps(DEFINITION, sort_keys=True) == before
    assert pinned["name"] == "pulse"
    pulse, db = pinned["services"]["pulse"], pinned["services"]["db"]
    assert (pulse["image"], pulse["pull_policy"], db["image"]) == (PULSE, "never", DB)
    assert "build" not in pulse
    assert pulse["init"] is True and db["init"] is False  # the service's own choice wins
    assert pulse["logging"] == DEFAULTS["logging"] and pulse["logging"] is not db["logging"]
    assert pinned["volumes"] == {"data": {}}


@pytest.mark.parametrize("engine, kept", [("20.10.24+dfsg1", False), ("", False), ("25.0.3", True), ("27.1.1", True)])
def test_pin_leaves_start_interval_out_on_old_engines(engine, kept):
    pinned = compose_pin(DEFINITION, "pulse", {"pulse": PULSE, "db": DB}, {}, engine)
    assert ("start_interval" in pinned["services"]["db"]["healthcheck"]) is kept
    assert pinned["services"]["db"]["healthcheck"]["interval"] == "1s"


SLOTS = {"service": "pulse", "ports": {"blue": 18080, "green": 18081}, "container_port": 8080}


def test_pin_runs_the_traffic_service_in_one_copy_per_slot_on_loopback():
    definition = {"services": {"pulse": dict(DEFINITION["services"]["pulse"], ports=["8080:8080"], container_name="web"),
                               "db": DEFINITION["services"]["db"]}}
    pinned = compose_pin(definition, "pulse", {"pulse": PULSE, "db": DB}, {}, "", slots=SLOTS)
    assert sorted(pinned["services"]) == ["db", "pulse-blue", "pulse-green"]
    blue, green = pinned["services"]["pulse-blue"], pinned["services"]["pulse-green"]
    assert blue["ports"] == ["127.0.0.1:18080:8080"] and green["ports"] == ["127.0.0.1:18081:8080"]
    assert blue["image"] == green["image"] == PULSE
    assert "container_name" not in blue  # two containers cannot share one name
    assert "ports" not in pinned["services"]["db"] and pinned["services"]["db"]["image"] == DB
    assert definition["services"]["pulse"]["ports"] == ["8080:8080"]


@pytest.mark.parametrize("slots, message", [
    (dict(SLOTS, service="web"), "traffic service 'web' is not a service .*db, pulse.*compose_stack_traffic_service"),
    (dict(SLOTS, service="db"), "pulse depend on the traffic service db"),
    (dict(SLOTS, ports={}), "a port per slot"),
])
def test_pin_refuses_slots_it_cannot_make(slots, message):
    definition = {"services": {"pulse": dict(DEFINITION["services"]["pulse"], depends_on=["db"]),
                               "db": DEFINITION["services"]["db"]}}
    with pytest.raises(AnsibleFilterError, match=message):
        compose_pin(definition, "pulse", {"pulse": PULSE, "db": DB}, {}, "", slots=slots)


def test_pin_refuses_a_service_without_an_id():
    with pytest.raises(AnsibleFilterError, match="services without a pinned image ID .*: db"):
        compose_pin(DEFINITION, "pulse", {"pulse": PULSE, "db": "postgres:15"})


def test_problems_say_which_container_is_not_up_and_why():
    inspect = [
        {"Name": "/pulse-pulse-1", "State": {"Status": "running", "Health": {"Status": "unhealthy", "Log": [
            {"Output": "Traceback...\nurllib.error.HTTPError: HTTP Error 503: Service Unavailable\n"}]}}},
        {"Name": "/pulse-db-1", "State": {"Status": "running", "Health": {"Status": "healthy", "Log": []}}},
        {"Name": "/pulse-worker-1", "State": {"Status": "exited", "ExitCode": 2, "Error": ""}},
        {"Name": "/pulse-cron-1", "State": {"Status": "running"}},
    ]
    assert compose_problems(json.dumps(inspect)) == [
        "pulse-pulse-1 is unhealthy, last health check: urllib.error.HTTPError: HTTP Error 503: Service Unavailable",
        "pulse-worker-1 is exited (exit code 2)",
    ]
    assert compose_problems("") == [] and compose_problems("not json") == []


def test_running_slot_is_the_copy_running_the_release():
    release = "/srv/pulse/releases/20261202T101500Z"
    other = "/srv/pulse/releases/20261201T090000Z"
    lines = ["postgres\trunning\t" + release, "pulse-blue\texited\t" + release,
             "pulse-green\trunning\t" + other, "garbage line"]
    assert compose_running_slot(lines, "pulse", release) is None  # blue has it but is stopped
    assert compose_running_slot(lines, "pulse", other + "/") == "green"
    assert compose_running_slot(lines + ["pulse-blue\trunning\t" + release], "pulse", release) == "blue"
    assert compose_running_slot([], "pulse", release) is None
