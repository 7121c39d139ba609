"""Unit tests for plugins/module_utils/_health.py: JSON paths and assertions, the retry loop, messages.

The retry loop runs against a scripted probe and a fake clock, so its arithmetic (attempt counts,
max_wait, streaks) is checked exactly and instantly. Real sockets and servers are exercised by
tests/unit/plugins/modules/test_health_check.py.
"""

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils._health import (
    HttpProbe,
    JsonAssertion,
    Outcome,
    PathNotFound,
    _FetchFailed,
    _NonExitingModule,
    json_equal,
    resolve_path,
    show,
    summarize,
    truncate,
    wait_for_health,
)

DOC = {"status": "healthy", "checks": {"db": {"state": "up", "latency": 3}}, "items": [{"name": "a"}, {"name": "b"}],
       "flag": True, "nothing": None}


@pytest.mark.parametrize("path, expected", [
    ("status", "healthy"),
    ("checks.db.state", "up"),
    ("items.1.name", "b"),
    ("items.-1.name", "b"),
    ("flag", True),
    ("nothing", None),
])
def test_resolve_path_finds_values(path, expected):
    assert resolve_path(DOC, path) == expected


@pytest.mark.parametrize("path, where", [
    ("missing", "no key 'missing' at the top level"),
    ("checks.cache", "no key 'cache' at 'checks'"),
    ("items.2", "index 2 out of range at 'items' (list of 2)"),
    ("items.first", "'items' is a list, 'first' is not an index"),
    ("status.code", "'status' is 'healthy', not an object or list"),
])
def test_resolve_path_says_where_it_stopped(path, where):
    with pytest.raises(PathNotFound) as exc:
        resolve_path(DOC, path)
    assert str(exc.value) == where


def test_json_equal_is_strict_about_booleans_and_deep():
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert not json_equal({"a": [1]}, {"a": [1, 2]})
    assert not json_equal("1", 1)
    assert not json_equal([1], 1)


@pytest.mark.parametrize("option, text, reason", [
    (dict(path="status", equals="healthy"), "json assertion status equals 'healthy'", None),
    (dict(path="status", equals="up"), "json assertion status equals 'up'", "got 'healthy'"),
    (dict(path="checks.db.state", one_of=["up", "degraded"]),
     "json assertion checks.db.state one_of ['up', 'degraded']", None),
    (dict(path="checks.db.latency", one_of=[1, 2]), "json assertion checks.db.latency one_of [1, 2]", "got 3"),
    (dict(path="flag", equals=1), "json assertion flag equals 1", "got true"),
    (dict(path="nothing", equals=None), "json assertion nothing equals null", None),
    (dict(path="checks.db", present=True), "json assertion checks.db is present", None),
    (dict(path="checks.cache", present=True), "json assertion checks.cache is present",
     "path not found: no key 'cache' at 'checks'"),
    (dict(path="checks.cache", present=False), "json assertion checks.cache is absent", None),
    (dict(path="checks.db", present=False), "json assertion checks.db is absent",
     'got {"latency":3,"state":"up"}'),
    (dict(path="checks.cache.state", equals="up"), "json assertion checks.cache.state equals 'up'",
     "path not found: no key 'cache' at 'checks'"),
])
def test_json_assertions(option, text, reason):
    assertion = JsonAssertion.from_option(option)
    assert str(assertion) == text
    assert assertion.check(DOC) == reason


def test_truncate_marks_the_cut():
    assert truncate("abc", 5) == "abc"
    assert truncate(None, 5) is None
    assert truncate("x" * 12, 5) == "xxxxx...[truncated, 12 chars in total]"


def test_show_reads_like_yaml():
    assert show("up") == "'up'"
    assert show([1, "a", None, False]) == "[1, 'a', null, false]"


def test_http_evaluate_checks_status_then_regex_then_json():
    probe = HttpProbe(None, "http://127.0.0.1/", status_codes=[200, 204], body_regex=r"ok",
                      json_assertions=[JsonAssertion("status", equals="ok")])
    failed = probe.evaluate(Outcome(False, status=503, body='{"status": "ok"}'))
    assert (failed.passed, failed.assertion, failed.reason) == (False, "status in [200, 204]", "got 503")
    failed = probe.evaluate(Outcome(False, status=200, body='{"status": "bad"}'))
    assert (failed.assertion, failed.reason) == ("body matches regex 'ok'", "no match")
    failed = probe.evaluate(Outcome(False, status=200, body='ok, not json'))
    assert failed.assertion == "body is JSON"
    assert failed.reason.startswith("not JSON: Expecting value")
    assert probe.evaluate(Outcome(False, status=204, body='{"status": "ok"}')).passed


def test_fetch_urls_fail_json_becomes_an_exception():
    # fetch_url ends the module itself on some errors; the probe gets an exception instead.
    class Module:
        params = {"validate_certs": False}

        def fail_json(self, **kwargs):
            raise SystemExit(1)

    wrapped = _NonExitingModule(Module())
    assert wrapped.params == {"validate_certs": False}
    with pytest.raises(_FetchFailed) as exc:
        wrapped.fail_json(msg="Failed to validate the SSL certificate", url="https://127.0.0.1/")
    assert str(exc.value) == "Failed to validate the SSL certificate"


# The retry loop ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProbe:
    """Passes or fails per a script ('+' pass, '-' fail); each attempt costs ``cost`` seconds."""

    kind = "tcp"

    def __init__(self, script, clock, cost=0.0):
        self.script = script
        self.clock = clock
        self.cost = cost
        self.timeouts = []

    def describe(self):
        return "scripted"

    def attempt(self, timeout):
        self.timeouts.append(timeout)
        self.clock.now += min(self.cost, timeout)
        mark = self.script[min(len(self.timeouts), len(self.script)) - 1]
        if mark == "+":
            return Outcome(True)
        return Outcome(False).failed("scripted check", "failed on purpose")


def run(script, cost=0.0, quick_wait=None, **kwargs):
    """wait_for_health on a script; without the quick attempts unless a test asks for them."""
    clock = FakeClock()
    probe = ScriptedProbe(script, clock, cost)
    result = wait_for_health(probe, clock=clock, sleep=clock.sleep, quick_wait=quick_wait, **kwargs)
    return probe, clock, result


def test_first_pass_is_healthy_without_sleeping():
    probe, clock, result = run("+", retries=5, interval=1)
    assert (result.healthy, result.attempts, result.passes, result.stopped) == (True, 1, 1, "healthy")
    assert clock.sleeps == []
    assert result.last_failure is None


def test_retries_are_the_total_number_of_attempts():
    probe, clock, result = run("-", retries=4, interval=2, timeout=3, cost=0.5)
    assert (result.healthy, result.attempts, result.stopped) == (False, 4, "retries")
    assert clock.sleeps == [2, 2, 2]          # between attempts, not after the last
    assert result.elapsed == pytest.approx(4 * 0.5 + 3 * 2)
    assert result.last_failure.attempt == 4


def test_a_failed_first_attempt_is_followed_by_quick_ones_within_the_first_interval():
    probe, clock, result = run("---+", quick_wait=0.1, retries=20, interval=0.5)
    assert (result.healthy, result.attempts) == (True, 4)
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.2])      # 0.4 would not fit: the rest of the interval
    # A check that never passes: the quick attempts are extra, the retries and their time unchanged.
    probe, clock, result = run("-", quick_wait=0.1, retries=4, interval=2, cost=0.5)
    assert (result.healthy, result.stopped, result.attempts) == (False, "retries", 8)
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.5, 2, 2])
    # Once the check has passed, failures are retried at the interval.
    probe, clock, result = run("+-+", quick_wait=0.1, retries=5, interval=1, success_threshold=2)
    assert clock.sleeps == [1, 1, 1] and result.healthy


def test_initial_delay_comes_first_and_counts_in_elapsed():
    probe, clock, result = run("+", retries=3, initial_delay=7)
    assert clock.sleeps == [7]
    assert result.elapsed == pytest.approx(7)


def test_a_failure_resets_the_streak():
    probe, clock, result = run("+-++-+++", retries=10, interval=1, success_threshold=3)
    assert (result.healthy, result.attempts, result.passes, result.best_streak) == (True, 8, 3, 3)
    assert result.last_failure.attempt == 5


def test_flapping_never_reaches_the_threshold_and_stops_once_unreachable():
    probe, clock, result = run("-+-+-+-+-+", retries=10, interval=1, success_threshold=2)
    # After attempt 9 fails, one attempt is left: a streak of 2 is out of reach.
    assert (result.healthy, result.attempts, result.best_streak, result.stopped) == (False, 9, 1, "unreachable")
    msg, values = summarize(probe, result, success_threshold=2)
    assert msg == (
        "health check scripted failed after 9 attempts in 8.0s: scripted check failed: failed on purpose; "
        "needed 2 consecutive passes, got at most 1; stopped early, too few attempts left to reach "
        "2 consecutive passes")


def test_message_when_time_runs_out_during_a_streak():
    probe, clock, result = run("-++++", retries=10, interval=1, success_threshold=3, max_wait=2.5)
    assert (result.healthy, result.attempts, result.passes, result.stopped) == (False, 3, 2, "max_wait")
    msg, values = summarize(probe, result, success_threshold=3, max_wait=2.5)
    assert msg == ("health check scripted failed after 3 attempts in 2.0s: needed 3 consecutive passes, "
                   "got at most 2; last failure (attempt 1): scripted check failed: failed on purpose; "
                   "gave up at max_wait 2.5s")
    assert values["passes"] == 2
    assert values["last_failure"]["attempt"] == 1


def test_stops_as_soon_as_the_threshold_is_out_of_reach():
    probe, clock, result = run("+-+", retries=3, interval=1, success_threshold=2)
    assert (result.healthy, result.attempts, result.stopped) == (False, 2, "unreachable")


def test_max_wait_bounds_the_whole_check():
    probe, clock, result = run("-", retries=1000, interval=1, timeout=5, cost=0.5, max_wait=10)
    # Attempts start at 0, 1.5, 3.0, 4.5, 6.0, 7.5 and 9.0; after that one ends at 9.5 the next
    # could not start before the 10 s deadline, so the loop stops instead of sleeping.
    assert result.stopped == "max_wait"
    assert result.attempts == 7
    assert result.elapsed == pytest.approx(9.5)
    msg, values = summarize(probe, result, max_wait=10)
    assert msg.endswith("; gave up at max_wait 10s")


def test_max_wait_cuts_an_attempts_timeout_to_the_time_left():
    probe, clock, result = run("-", retries=3, interval=0, timeout=5, cost=100, max_wait=7, initial_delay=1)
    assert probe.timeouts[0] == pytest.approx(5)
    assert probe.timeouts[1] == pytest.approx(1)
    assert result.elapsed == pytest.approx(7)
    assert result.attempts == 2


def test_max_wait_before_the_threshold_is_reached_without_failures():
    probe, clock, result = run("+", retries=10, interval=3, success_threshold=4, max_wait=5)
    assert (result.healthy, result.attempts, result.stopped) == (False, 2, "max_wait")
    msg, values = summarize(probe, result, success_threshold=4, max_wait=5)
    assert msg == ("health check scripted failed after 2 attempts in 3.0s: needed 4 consecutive passes, "
                   "got at most 2; gave up at max_wait 5s")
    assert values["last_failure"] is None


def test_summary_of_a_healthy_http_check():
    clock = FakeClock()
    probe = HttpProbe(None, "http://user:secret@127.0.0.1:8080/health")
    result = wait_for_health(ScriptedProbe("+", clock), clock=clock, sleep=clock.sleep)
    result.last.status, result.last.body = 200, "x" * 1500
    msg, values = summarize(probe, result)
    assert "secret" not in msg
    assert msg == "health check http GET http://****:****@127.0.0.1:8080/health healthy after 1 attempt in 0.0s"
    assert values["status"] == 200
    assert values["body"].endswith("...[truncated, 1500 chars in total]")
