"""The deploy lock, the in-progress record and the audit log, on real files, raced by real processes."""

import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _lock

# fork: the children inherit sys.path (the checkout as ansible_collections) and start fast.
CTX = multiprocessing.get_context("fork")


def holder(token, **extra):
    return dict(token=token, who=f"user-{token}", version="1.2.0", release_id="20261125T180000Z",
                operation="deploy", controller="ctl", **extra)


@pytest.fixture()
def lockdir(tmp_path):
    return str(tmp_path / "shipit" / "pulse")


def lock_file(lockdir):
    return json.loads(open(os.path.join(lockdir, _lock.LOCK_FILE), encoding="utf-8").read())


# --- racing processes --------------------------------------------------------------------------------

def _race(lockdir, token, barrier, results, ttl=60, wait=0.0):
    barrier.wait()
    outcome = _lock.acquire(lockdir, holder(token), ttl=ttl, wait=wait)
    results.put((token, outcome["acquired"], (outcome["broken"] or {}).get("token")))


def race(lockdir, runs, **kwargs):
    barrier = CTX.Barrier(runs)
    results = CTX.Queue()
    procs = [CTX.Process(target=_race, args=(lockdir, f"run{i}", barrier, results), kwargs=kwargs)
             for i in range(runs)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return outcomes


@pytest.mark.parametrize("attempt", range(5))
def test_exactly_one_of_many_racing_processes_takes_the_lock(lockdir, attempt):
    outcomes = race(lockdir, 12)
    winners = [token for token, acquired, _broken in outcomes if acquired]
    assert len(winners) == 1
    assert lock_file(lockdir)["token"] == winners[0]
    # No temp file left behind by the losers.
    assert sorted(os.listdir(lockdir)) == [_lock.LOCK_FILE]


@pytest.mark.parametrize("attempt", range(5))
def test_exactly_one_of_many_racing_processes_breaks_a_stale_lock(lockdir, attempt):
    _lock.acquire(lockdir, holder("dead"), ttl=1, now=lambda: time.time() - 10)
    outcomes = race(lockdir, 12)
    winners = [token for token, acquired, _broken in outcomes if acquired]
    assert len(winners) == 1
    # The stale lock is removed once, by one process (compare-and-delete), which may or may not be the winner.
    assert [broken for _token, _acquired, broken in outcomes if broken] == ["dead"]
    assert lock_file(lockdir)["token"] == winners[0]


def _hold_then_release(lockdir, seconds, ready):
    _lock.acquire(lockdir, holder("first"), ttl=60)
    ready.set()
    time.sleep(seconds)
    _lock.release(lockdir, "first")


def test_wait_takes_the_lock_once_its_holder_releases_it(lockdir):
    ready = CTX.Event()
    proc = CTX.Process(target=_hold_then_release, args=(lockdir, 1.0, ready))
    proc.start()
    assert ready.wait(10)
    started = time.monotonic()
    outcome = _lock.acquire(lockdir, holder("second"), ttl=60, wait=10)
    elapsed = time.monotonic() - started
    proc.join(10)
    assert outcome["acquired"] and lock_file(lockdir)["token"] == "second"
    assert 0.5 < elapsed < 5


def test_wait_is_bounded(lockdir):
    _lock.acquire(lockdir, holder("first"), ttl=60)
    started = time.monotonic()
    outcome = _lock.acquire(lockdir, holder("second"), ttl=60, wait=0.6)
    elapsed = time.monotonic() - started
    assert not outcome["acquired"]
    assert outcome["lock"]["token"] == "first"
    assert 0.5 <= elapsed < 2


def _append(path, writer, count, barrier):
    barrier.wait()
    for i in range(count):
        fields = {"who": writer, "message": "x" * 3000, "details": {"i": i}}
        _lock.append_audit(path, _lock.audit_entry("deploy", "succeeded", fields))


def test_concurrent_audit_writers_never_interleave(tmp_path):
    path = str(tmp_path / "audit.log")
    barrier = CTX.Barrier(6)
    procs = [CTX.Process(target=_append, args=(path, f"w{n}", 50, barrier)) for n in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 300
    entries = [json.loads(line) for line in lines]
    for writer in (f"w{n}" for n in range(6)):
        assert [e["details"]["i"] for e in entries if e["who"] == writer] == list(range(50))
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


# --- single process behaviour -----------------------------------------------------------------------

def test_lock_holds_who_what_and_when(lockdir):
    outcome = _lock.acquire(lockdir, holder("a", ci_url="https://ci.example/run/7"), ttl=600)
    lock = lock_file(lockdir)
    assert outcome["acquired"] and outcome["changed"]
    for key in ("who", "version", "release_id", "operation", "controller", "target", "acquired_at", "expires_at",
                "ci_url"):
        assert lock[key], key
    assert lock["expires_ts"] - lock["acquired_ts"] == 600
    assert _lock.describe(lock).startswith(f"locked by user-a since {lock['acquired_at']} (1.2.0)")


def test_same_token_renews_instead_of_taking_again(lockdir):
    first = _lock.acquire(lockdir, holder("a"), ttl=60, now=lambda: 1000.0)
    again = _lock.acquire(lockdir, holder("a"), ttl=60, now=lambda: 1030.0)
    assert first["changed"] and again["acquired"] and not again["changed"]
    assert lock_file(lockdir)["expires_ts"] == 1090.0
    assert lock_file(lockdir)["acquired_ts"] == 1000.0


def test_a_live_lock_is_not_broken_and_not_touched(lockdir):
    _lock.acquire(lockdir, holder("a"), ttl=60)
    before = open(os.path.join(lockdir, _lock.LOCK_FILE)).read()
    outcome = _lock.acquire(lockdir, holder("b"), ttl=60)
    assert not outcome["acquired"] and outcome["broken"] is None
    assert open(os.path.join(lockdir, _lock.LOCK_FILE)).read() == before


def test_stale_lock_is_broken_and_reported(lockdir):
    _lock.acquire(lockdir, holder("dead"), ttl=5, now=lambda: time.time() - 6)
    seen = []
    outcome = _lock.acquire(lockdir, holder("b"), ttl=60, on_break=lambda lock, because: seen.append((lock, because)))
    assert outcome["acquired"] and outcome["broken"]["token"] == "dead"
    assert outcome["broken"]["broken_because"] == "stale"
    assert [(lock["token"], because) for lock, because in seen] == [("dead", "stale")]


def test_the_lock_of_a_run_known_dead_is_broken_before_it_expires(lockdir):
    _lock.acquire(lockdir, holder("killed"), ttl=3600)
    # Only the token named is broken: a live lock of another run is left alone.
    assert not _lock.acquire(lockdir, holder("b"), ttl=60, break_token="someone-else")["acquired"]
    outcome = _lock.acquire(lockdir, holder("b"), ttl=60, break_token="killed")
    assert outcome["acquired"] and outcome["broken"]["token"] == "killed"
    assert outcome["broken"]["broken_because"] == "dead"


def test_unreadable_lock_counts_as_held_until_it_is_stale(lockdir):
    os.makedirs(lockdir)
    path = os.path.join(lockdir, _lock.LOCK_FILE)
    with open(path, "w") as handle:
        handle.write("{not json")
    outcome = _lock.acquire(lockdir, holder("b"), ttl=60)
    assert not outcome["acquired"]
    assert "unreadable" in outcome["lock"]["who"]
    old = time.time() - 120
    os.utime(path, (old, old))
    assert _lock.acquire(lockdir, holder("b"), ttl=60)["acquired"]


def test_check_mode_reads_but_writes_nothing(lockdir):
    outcome = _lock.acquire(lockdir, holder("a"), ttl=60, check_mode=True)
    assert outcome["acquired"] and outcome["changed"]
    assert not os.path.exists(lockdir)
    _lock.acquire(lockdir, holder("a"), ttl=60)
    assert not _lock.acquire(lockdir, holder("b"), ttl=60, check_mode=True)["acquired"]
    released = _lock.release(lockdir, "a", check_mode=True)
    assert released["released"] and os.path.exists(os.path.join(lockdir, _lock.LOCK_FILE))


def test_release_only_by_its_token_or_force(lockdir):
    _lock.acquire(lockdir, holder("a"), ttl=60)
    wrong = _lock.release(lockdir, "b")
    assert not wrong["released"] and wrong["lock"]["token"] == "a"
    assert os.path.exists(os.path.join(lockdir, _lock.LOCK_FILE))
    forced = _lock.release(lockdir, None, force=True)
    assert forced["released"] and forced["lock"]["token"] == "a"
    assert not os.path.exists(os.path.join(lockdir, _lock.LOCK_FILE))
    assert not _lock.release(lockdir, "a")["changed"]


def test_in_progress_record_survives_a_dead_run_and_is_reported_to_the_next(lockdir):
    _lock.acquire(lockdir, holder("dead"), ttl=5, now=lambda: time.time() - 100)
    _lock.write_progress(lockdir, "dead", {"operation": "deploy", "release_id": "r9", "version": "1.2.0",
                                           "stage": "switch"}, ttl=5, now=lambda: time.time() - 100)
    # ... the run is killed here: no release, no cleanup.
    outcome = _lock.acquire(lockdir, holder("next"), ttl=60)
    assert outcome["acquired"] and outcome["broken"]["token"] == "dead"
    interrupted = outcome["interrupted"]
    assert (interrupted["stage"], interrupted["release_id"], interrupted["who"]) == ("switch", "r9", "user-dead")
    assert interrupted["started_at"]
    assert "interrupted at stage switch" in _lock.describe_progress(interrupted)
    # The next run must deal with it before recording its own stages.
    with pytest.raises(_lock.LockError, match="recover it first"):
        _lock.write_progress(lockdir, "next", {"stage": "release"}, ttl=60)
    changed, record, replaced = _lock.write_progress(lockdir, "next", {"stage": "release"}, ttl=60,
                                                     replace_other=True)
    assert changed and replaced["token"] == "dead" and record["token"] == "next"


def test_progress_keeps_started_at_and_renews_the_lock(lockdir):
    _lock.acquire(lockdir, holder("a"), ttl=60, now=lambda: 1000.0)
    _lock.write_progress(lockdir, "a", {"stage": "release"}, ttl=60, now=lambda: 1010.0)
    _changed, record, _ = _lock.write_progress(lockdir, "a", {"stage": "verify"}, ttl=60, now=lambda: 1050.0)
    assert record["started_at"] == _lock.iso(1010.0) and record["stage"] == "verify"
    assert lock_file(lockdir)["expires_ts"] == 1110.0


def test_a_run_whose_lock_was_taken_over_stops(lockdir):
    _lock.acquire(lockdir, holder("slow"), ttl=1, now=lambda: time.time() - 10)
    assert _lock.acquire(lockdir, holder("other"), ttl=60)["acquired"]
    with pytest.raises(_lock.LockLost, match="taken over.*locked by user-other"):
        _lock.write_progress(lockdir, "slow", {"stage": "switch"}, ttl=60)
    with pytest.raises(_lock.LockLost):
        _lock.renew(lockdir, "slow", 60)


def test_release_clears_only_its_own_progress(lockdir):
    _lock.acquire(lockdir, holder("a"), ttl=60)
    _lock.write_progress(lockdir, "a", {"stage": "release"}, ttl=60)
    kept = _lock.release(lockdir, "a", clear_progress=False)
    assert kept["released"] and not kept["progress_cleared"]
    # The record is now an interrupted run's; a forced unlock by someone else never removes it.
    _lock.acquire(lockdir, holder("b"), ttl=60)
    forced = _lock.release(lockdir, None, force=True)
    assert forced["interrupted"]["token"] == "a"
    assert os.path.exists(os.path.join(lockdir, _lock.PROGRESS_FILE))
    _lock.acquire(lockdir, holder("a"), ttl=60)
    assert _lock.release(lockdir, "a")["progress_cleared"]
    assert os.listdir(lockdir) == [_lock.GUARD_FILE]


def test_read_audit_filters_and_skips_damage(tmp_path):
    path = str(tmp_path / "audit.log")
    _lock.append_audit(path, _lock.audit_entry("deploy", "started", {"app": "pulse"}))
    with open(path, "a") as handle:
        handle.write("garbage\n")
    _lock.append_audit(path, _lock.audit_entry("deploy", "succeeded", {"app": "pulse"}))
    _lock.append_audit(path, _lock.audit_entry("deploy", "succeeded", {"app": "other"}))
    assert [e["result"] for e in _lock.read_audit(path, "pulse")] == ["started", "succeeded"]
    assert [e["app"] for e in _lock.read_audit(path, last=1)] == ["other"]
