"""Schema migrations. Which ones a build knows follows from its version, so one tree builds any release."""

from collections import namedtuple

from . import VERSION, parse_version

Migration = namedtuple("Migration", "number since description sql")

MIGRATIONS = (
    Migration(
        1, (0, 0, 0), "create table visits",
        {
            "sqlite": "CREATE TABLE visits ("
                      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                      " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
                      " path TEXT)",
            "postgresql": "CREATE TABLE visits ("
                          " id BIGSERIAL PRIMARY KEY,"
                          " created_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
                          " path TEXT)",
        },
    ),
    Migration(
        2, (1, 1, 0), "add visits.user_agent",
        {
            "sqlite": "ALTER TABLE visits ADD COLUMN user_agent TEXT",
            "postgresql": "ALTER TABLE visits ADD COLUMN user_agent TEXT",
        },
    ),
)


def known_migrations(version=VERSION):
    """Migrations that code of this version ships; an unversioned source tree ("dev") knows them all."""
    parsed = parse_version(version)
    return tuple(m for m in MIGRATIONS if parsed is None or parsed >= m.since)


def required_schema(version=VERSION):
    """The schema this code needs: the newest migration it knows. A newer schema is fine (rollbacks)."""
    return max((m.number for m in known_migrations(version)), default=0)
