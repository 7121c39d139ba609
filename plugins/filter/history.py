# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/history.yml: a host's release ledger as rows (for JSON) and as a table people read.

Documented in history_rows.yml and history_table.yml next to this file. The shipit command loads this file
from the collection it runs (shipit/report.py history_filters) and prints the same rows and table.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# The keys of a row, in order: what the table shows, with the full git sha.
# slot: the front proxy's slot the release ran in (traffic switching); the live release's is the live slot.
ROW_KEYS = ("release_id", "version", "status", "pruned_from", "slot", "when", "deployed_by", "git_sha", "backup_id",
            "reason")
COLUMNS = (("RELEASE", "release_id"), ("VERSION", "version"), ("STATUS", "status"), ("SLOT", "slot"), ("WHEN", "when"),
           ("WHO", "deployed_by"), ("GIT SHA", "git_sha"), ("BACKUP", "backup_id"))
SHORT_SHA = 12
REASON_INDENT = "    "


def _text(value):
    return None if value is None or value == "" else str(value)


def history_rows(releases):
    """One row per ledger entry, oldest first: ROW_KEYS, null when the entry has no such field."""
    if not isinstance(releases, list) or not all(isinstance(entry, dict) for entry in releases):
        raise AnsibleFilterError("history_rows needs the list of ledger entries (release_ledger_info's releases)")
    rows = []
    for entry in releases:
        row = {key: _text(entry.get(key)) for key in ROW_KEYS if key != "when"}
        # A row made already (the shipit command's report) keeps its when.
        row["when"] = _text(entry.get("updated_at")) or _text(entry.get("created_at")) or _text(entry.get("when"))
        rows.append({key: row[key] for key in ROW_KEYS})
    return rows


def history_table(releases):
    """The rows as aligned columns under a header line; each reason in full on its own indented line."""
    rows = history_rows(releases)
    cells = [[header for header, _key in COLUMNS]]
    for row in rows:
        cell = {key: row[key] or "-" for _header, key in COLUMNS}
        if row["git_sha"]:
            cell["git_sha"] = row["git_sha"][:SHORT_SHA]
        cells.append([cell[key] for _header, key in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(cells[0], widths)).rstrip()]
    for row, line in zip(rows, cells[1:]):
        lines.append("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())
        if row["reason"]:
            reason = row["reason"].splitlines() or [""]
            lines.append(f"{REASON_INDENT}reason: {reason[0]}".rstrip())
            lines.extend(f"{REASON_INDENT}        {more}".rstrip() for more in reason[1:])
    return "\n".join(lines)


class FilterModule:
    def filters(self):
        return {"history_rows": history_rows, "history_table": history_table}
