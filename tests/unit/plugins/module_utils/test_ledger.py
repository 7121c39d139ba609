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
