"""Shared by the backup tests (a uniquely named module: `conftest` is a name every test dir uses)."""

from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Odd characters on purpose: DSN percent-encoding, SQL quoting, and redaction in messages.
PG_APP_PASSWORD = "p@ss:w/rd #1'x"
