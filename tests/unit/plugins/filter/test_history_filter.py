"""shipit.deploy.history_rows and history_table: the ledger as rows for JSON and as a table people read."""

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.shipit.deploy.plugins.filter.history import history_rows, history_table

LEDGER = [
    {"release_id": "20261125T100000Z", "version": "1.0.0", "status": "pruned", "pruned_from": "good",
     "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-27T09:00:00Z", "deployed_by": "alice",
     "git_sha": "0123456789abcdef0123456789abcdef01234567"},
    {"release_id": "20261126T100000Z", "version": "1.2.0", "status": "failed", "created_at": "2026-11-26T10:00:00Z",
     "deployed_by": "bob", "backup_id": "20261126T095959Z-sqlite",
     "reason": "health check pulse /health failed on web1: status in [200] failed: got 503 after 20 attempts,"
               " a reason longer than any column so that it is never cut\nsecond line of the reason"},
    {"release_id": "20261127T100000Z", "version": "1.1.0", "status": "live", "created_at": "2026-11-27T10:00:00Z"},
]


def test_rows_hold_every_field_in_full_with_when_from_updated_or_created():
    rows = history_rows(LEDGER)
    assert [r["when"] for r in rows] == ["2026-11-27T09:00:00Z", "2026-11-26T10:00:00Z", "2026-11-27T10:00:00Z"]
    assert rows[0]["git_sha"] == LEDGER[0]["git_sha"] and rows[0]["pruned_from"] == "good"
    assert rows[1]["reason"] == LEDGER[1]["reason"] and rows[2]["reason"] is None
    assert json.loads(json.dumps(rows)) == rows
    assert history_rows(rows) == rows  # rows made already keep their fields, when included


def test_table_aligns_columns_and_puts_each_reason_in_full_on_its_own_line():
    lines = history_table(LEDGER).splitlines()
    assert lines[0].split() == ["RELEASE", "VERSION", "STATUS", "SLOT", "WHEN", "WHO", "GIT", "SHA", "BACKUP"]
    status_column = lines[0].index("STATUS")
    assert lines[1].startswith("20261125T100000Z") and lines[1][status_column:].startswith("pruned")
    assert "0123456789ab " in lines[1] + " " and "0123456789abc" not in lines[1]  # the short sha
    assert lines[2][status_column:].startswith("failed") and "20261126T095959Z-sqlite" in lines[2]
    assert lines[3] == "    reason: " + LEDGER[1]["reason"].splitlines()[0]
    assert lines[4].strip() == "second line of the reason"
    assert lines[5].startswith("20261127T100000Z") and lines[5].rstrip().endswith("-")
    assert len(lines) == 6


def test_not_a_ledger_is_refused_clearly():
    with pytest.raises(AnsibleFilterError, match="list of ledger entries"):
        history_rows({"releases": []})


SHA = "a9e3d8ca512f58a47d2ed470d031972de78148e4"
REASON = ("health check http GET http://127.0.0.1:8080/health failed after 20 attempts in 10.8s: status in [200] "
          "failed: got 503 (HTTP 503, body: {\"status\": \"unhealthy\", \"reason\": \"deliberately broken build\"})")
RELEASES = [
    {"release_id": "20261125T184659Z", "version": "1.2.0", "status": "failed", "created_at": "2026-11-25T18:47:00Z",
     "updated_at": "2026-11-25T18:47:34Z", "deployed_by": "ci", "git_sha": SHA, "reason": REASON,
     "checksum": "sha256:0d36"},
    {"release_id": "20261125T185142Z", "version": "1.0.0", "status": "pruned", "pruned_from": "good",
     "created_at": "2026-11-25T18:52:38Z", "deployed_by": "alice", "backup_id": "20261125T185157Z"},
    {"release_id": "20261125T193841Z", "version": "1.1.0-rc.1+build.7", "status": "live", "slot": "green",
     "updated_at": "2026-11-25T19:42:38Z", "reason": "line one\nline two"},
]


def test_table_layout_line_by_line():
    assert history_table(RELEASES).splitlines() == [
        "RELEASE           VERSION             STATUS  SLOT   WHEN                  WHO    GIT SHA       BACKUP",
        "20261125T184659Z  1.2.0               failed  -      2026-11-25T18:47:34Z  ci     a9e3d8ca512f  -",
        f"    reason: {REASON}",
        "20261125T185142Z  1.0.0               pruned  -      2026-11-25T18:52:38Z  alice  -             20261125T185157Z",
        "20261125T193841Z  1.1.0-rc.1+build.7  live    green  2026-11-25T19:42:38Z  -      -             -",
        "    reason: line one",
        "            line two",
    ]


def test_no_line_of_the_table_ends_with_a_space():
    # Trailing spaces would make the YAML callback quote the whole table instead of printing plain lines.
    assert all(line == line.rstrip() for line in history_table(RELEASES).splitlines())


def test_rows_have_fixed_keys_in_order():
    rows = history_rows(RELEASES)
    assert list(rows[0]) == ["release_id", "version", "status", "pruned_from", "slot", "when", "deployed_by", "git_sha",
                             "backup_id", "reason"]
    assert rows[2]["slot"] == "green"
    assert rows[1] == {"release_id": "20261125T185142Z", "version": "1.0.0", "status": "pruned",
                       "pruned_from": "good", "slot": None, "when": "2026-11-25T18:52:38Z", "deployed_by": "alice",
                       "git_sha": None, "backup_id": "20261125T185157Z", "reason": None}
