"""The release ledger: statuses, demotion of the live release, atomic writes, safe names."""

import json
import os

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger


def recorded(data, release_id, status, previous_status="good", **fields):
    new, changed, _before, _after = _ledger.record(data, release_id, status, fields, previous_status)
    return new, changed


def test_first_release_becomes_live():
    data, changed = recorded(_ledger.empty_ledger("pulse"), "20261125T100000Z", "live", version="1.0.0")
    assert changed
    assert _ledger.live(data)["version"] == "1.0.0"
    assert _ledger.previous_good(data) is None


def test_new_live_release_demotes_the_old_one_to_good():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    data, _ = recorded(data, "r2", "live", version="1.1.0")
    assert _ledger.live(data)["release_id"] == "r2"
    assert _ledger.previous_good(data)["release_id"] == "r1"


def test_manual_rollback_marks_the_old_live_release_rolled_back():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    data, _ = recorded(data, "r2", "live", version="1.1.0")
    data, _ = recorded(data, "r1", "live", previous_status="rolled_back")
    statuses = {e["release_id"]: e["status"] for e in data["releases"]}
    assert statuses == {"r1": "live", "r2": "rolled_back"}
    assert _ledger.previous_good(data) is None


def test_failed_release_keeps_the_live_one_and_its_reason():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    data, _ = recorded(data, "r2", "failed", version="1.2.0", reason="HTTP 503")
    assert _ledger.live(data)["release_id"] == "r1"
    assert _ledger.find(data, "1.2.0")["reason"] == "HTTP 503"


def test_recording_the_same_status_again_changes_nothing():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0", checksum="sha256:ab")
    again, changed = recorded(data, "r1", "live", version="1.0.0", checksum="sha256:ab")
    assert not changed
    assert again == data


def test_find_by_version_or_release_id_returns_the_newest():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    data, _ = recorded(data, "r2", "live", version="1.0.0")
    assert _ledger.find(data, "1.0.0")["release_id"] == "r2"
    assert _ledger.find(data, "r1")["release_id"] == "r1"
    assert _ledger.find(data, "9.9.9") is None


def test_find_by_version_prefers_a_release_that_did_not_fail():
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    data, _ = recorded(data, "r2", "failed", version="1.0.0", reason="HTTP 503")
    assert _ledger.find(data, "1.0.0")["release_id"] == "r1"


def test_unknown_release_needs_a_version():
    with pytest.raises(_ledger.LedgerError, match="version is required"):
        recorded(_ledger.empty_ledger("pulse"), "r1", "live")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 200, "r1/../../x"])
def test_unsafe_release_ids_are_refused(name):
    with pytest.raises(_ledger.LedgerError, match="not a safe name"):
        recorded(_ledger.empty_ledger("pulse"), name, "live", version="1.0.0")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = _ledger.ledger_path(str(tmp_path), "pulse")
    data, _ = recorded(_ledger.empty_ledger("pulse"), "r1", "live", version="1.0.0")
    _ledger.save(path, data)
    assert _ledger.load(path, "pulse") == data
    assert os.listdir(os.path.dirname(path)) == ["ledger.json"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_a_corrupt_ledger_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "pulse" / "ledger.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(_ledger.LedgerError, match="cannot read the ledger"):
        _ledger.load(str(path), "pulse")
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(_ledger.LedgerError, match="not a shipit ledger"):
        _ledger.load(str(path), "pulse")


# ---- pruned releases and a bounded ledger -------------------------------------------------------------------
def ledger_of(*entries):
    """A ledger of (release_id, status[, version]) tuples, oldest first."""
    releases = []
    for release_id, status, *version in entries:
        releases.append({"release_id": release_id, "status": status, "version": (version or ["1.0.0"])[0],
                         "created_at": "2026-11-25T10:00:00Z", "reason": f"why {release_id}"})
    return {"ledger_version": 1, "app": "pulse", "releases": releases}


def statuses(data):
    return {e["release_id"]: e["status"] for e in data["releases"]}


def test_pruned_is_a_status_the_ledger_records():
    assert "pruned" in _ledger.STATUSES
    data, changed = recorded(ledger_of(("r1", "good")), "r1", "pruned")
    assert changed and statuses(data) == {"r1": "pruned"}


def test_mark_pruned_records_the_removed_releases_and_keeps_their_facts():
    data = ledger_of(("r1", "good", "1.0.0"), ("r2", "failed", "1.1.0"), ("r3", "rolled_back"), ("r4", "live"))
    new, marked = _ledger.mark_pruned(data, ["r1", "r2", "r4", "not-in-ledger"])
    assert marked == ["r1", "r2"]
    assert statuses(new) == {"r1": "pruned", "r2": "pruned", "r3": "rolled_back", "r4": "live"}  # never the live one
    r1 = new["releases"][0]
    assert (r1["version"], r1["reason"], r1["created_at"], r1["pruned_from"]) == (
        "1.0.0", "why r1", "2026-11-25T10:00:00Z", "good")
    assert r1["updated_at"]
    assert statuses(data)["r1"] == "good"  # the ledger given is not changed in place


def test_mark_pruned_reconciles_releases_whose_directory_is_gone():
    # A ledger written before pruned releases were recorded: old good releases long removed from the host.
    data = ledger_of(("r1", "good"), ("r2", "rolled_back"), ("r3", "failed"), ("r4", "good"), ("r5", "live"))
    new, marked = _ledger.mark_pruned(data, [], present={"r4", "r5"})
    assert marked == ["r1", "r2"]
    # A failed release may never have had a directory: it stays failed unless a prune removed it.
    assert statuses(new) == {"r1": "pruned", "r2": "pruned", "r3": "failed", "r4": "good", "r5": "live"}
    again, marked = _ledger.mark_pruned(new, [], present={"r4", "r5"})
    assert marked == [] and again is new


def test_rollback_never_picks_a_pruned_release():
    data = ledger_of(("r1", "good"), ("r2", "good"), ("r3", "live"))
    assert _ledger.previous_good(data)["release_id"] == "r2"
    data, _ = _ledger.mark_pruned(data, ["r2"])
    assert _ledger.previous_good(data)["release_id"] == "r1"
    data, _ = _ledger.mark_pruned(data, ["r1"])
    assert _ledger.previous_good(data) is None


def test_an_explicit_rollback_target_that_was_pruned_is_refused_by_name():
    data, _ = _ledger.mark_pruned(ledger_of(("r1", "good", "1.0.0"), ("r2", "live", "1.1.0")), ["r1"])
    for asked in ("r1", "1.0.0"):
        with pytest.raises(_ledger.PrunedError, match=r"release r1 \(1\.0\.0\) of pulse was pruned on .*: its files "
                                                      r"are no longer on the host, so it cannot be rolled back to"):
            _ledger.find(data, asked)
    assert _ledger.find(data, "r2")["release_id"] == "r2"


def test_find_by_version_prefers_a_release_on_the_host_over_a_newer_pruned_one():
    data = ledger_of(("r1", "good", "1.0.0"), ("r2", "pruned", "1.0.0"), ("r3", "failed", "1.2.0"),
                     ("r4", "pruned", "1.2.0"), ("r5", "live", "1.1.0"))
    assert _ledger.find(data, "1.0.0")["release_id"] == "r1"
    assert _ledger.find(data, "1.2.0")["release_id"] == "r3"  # failed but there: a refusal comes later, on disk


def test_trim_keeps_releases_on_disk_and_only_the_newest_failed_and_pruned():
    entries = [(f"f{n}", "failed") for n in range(5)] + [(f"p{n}", "pruned") for n in range(5)]
    entries += [("g1", "good"), ("b1", "rolled_back"), ("x1", "some_future_status"), ("l1", "live")]
    data = ledger_of(*entries)
    kept, dropped = _ledger.trim(data["releases"], keep_failed=2, keep_pruned=1)
    assert [e["release_id"] for e in kept] == ["f3", "f4", "p4", "g1", "b1", "x1", "l1"]
    assert [e["release_id"] for e in dropped] == ["f0", "f1", "f2", "p0", "p1", "p2", "p3"]
    kept, dropped = _ledger.trim(data["releases"], keep_failed=0, keep_pruned=0, keep_ids=("f0",))
    assert [e["release_id"] for e in kept] == ["f0", "g1", "b1", "x1", "l1"]


def test_each_write_bounds_an_old_ledger_and_keeps_the_release_recorded():
    # An old, unbounded ledger (no pruned status yet) loads and is bounded on its next write.
    data = ledger_of(*[(f"2026112{n}T000000Z", "failed") for n in range(6)], ("20261126T000000Z", "live"))
    new, changed, _before, after = _ledger.record(data, "20261127T000000Z", "failed", {"version": "1.3.0"},
                                                  keep_failed=0, keep_pruned=10)
    assert changed and after["status"] == "failed"
    assert [e["release_id"] for e in new["releases"]] == ["20261126T000000Z", "20261127T000000Z"]
    new, changed, _before, _after = _ledger.record(new, "20261126T000000Z", "live", {}, keep_failed=0)
    assert [e["release_id"] for e in new["releases"]] == ["20261126T000000Z"] and changed
    _, changed, _before, _after = _ledger.record(new, "20261126T000000Z", "live", {}, keep_failed=0)
    assert not changed
    with pytest.raises(_ledger.LedgerError, match="keep_failed must be 0 or more"):
        _ledger.record(new, "20261126T000000Z", "live", {}, keep_failed=-1)


def test_record_pruned_writes_the_ledger_only_when_it_marks_something(tmp_path):
    ledger_dir = str(tmp_path)
    assert _ledger.record_pruned(ledger_dir, "pulse", ["r1"], {"r2"}) == []
    assert not os.path.exists(os.path.join(ledger_dir, "pulse"))  # no ledger, none is made
    path = _ledger.ledger_path(ledger_dir, "pulse")
    _ledger.save(path, ledger_of(("r1", "good"), ("r2", "live")))
    assert _ledger.record_pruned(ledger_dir, "pulse", ["r1"], {"r2"}, check_mode=True) == ["r1"]
    assert statuses(_ledger.load(path, "pulse"))["r1"] == "good"
    assert _ledger.record_pruned(ledger_dir, "pulse", ["r1"], {"r2"}) == ["r1"]
    assert statuses(_ledger.load(path, "pulse")) == {"r1": "pruned", "r2": "live"}
    assert os.listdir(os.path.dirname(path)) == ["ledger.json"]
