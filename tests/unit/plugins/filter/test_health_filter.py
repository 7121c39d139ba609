"""The health checks under traffic switching: moved to a slot's port, and baked."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.shipit.deploy.plugins.filter.health import health_checks_baked, health_checks_on_port

CHECKS = [
    {"name": "public", "kind": "http", "url": "http://127.0.0.1:8080/health?deep=1", "retries": 20, "interval": 0.5},
    {"name": "localhost", "kind": "http", "url": "http://user:pw@localhost:8080/x"},
    {"name": "another port", "kind": "http", "url": "http://127.0.0.1:9090/health"},
    {"name": "another host", "kind": "http", "url": "http://db.internal:8080/health"},
    {"name": "tcp", "kind": "tcp", "port": 8080},
    {"name": "command", "kind": "command", "argv": ["true"]},
]


def test_checks_of_the_public_port_on_the_host_go_to_the_slot_port():
    moved = health_checks_on_port(CHECKS, 8080, 18081)
    assert [check.get("url", check.get("port")) for check in moved] == [
        "http://127.0.0.1:18081/health?deep=1", "http://user:pw@localhost:18081/x", "http://127.0.0.1:9090/health",
        "http://db.internal:8080/health", 18081, None]
    assert moved[0]["retries"] == 20 and CHECKS[0]["url"].endswith(":8080/health?deep=1")  # the input is unchanged


def test_a_default_port_counts_as_the_public_port():
    assert health_checks_on_port([{"kind": "http", "url": "http://127.0.0.1/up"}], 80, 18080)[0]["url"] == \
        "http://127.0.0.1:18080/up"


def test_a_bake_repeats_each_check_and_fails_at_the_first_failure():
    baked = health_checks_baked([dict(CHECKS[0], initial_delay=3, max_wait=10), CHECKS[4]], 3)
    assert (baked[0]["retries"], baked[0]["success_threshold"]) == (6, 6)  # 3 s / 0.5 s
    assert "initial_delay" not in baked[0] and "max_wait" not in baked[0]
    assert (baked[1]["retries"], baked[1]["success_threshold"]) == (3, 3)  # health_check's default interval, 1 s
    assert baked[0]["name"] == "public (bake 3s)"


def test_no_bake_leaves_the_checks_as_they_are():
    assert health_checks_baked(CHECKS, 0) == CHECKS


def test_not_a_list_of_checks_is_refused_clearly():
    with pytest.raises(AnsibleFilterError, match="needs a list of health checks"):
        health_checks_on_port({"kind": "http"}, 8080, 18080)
