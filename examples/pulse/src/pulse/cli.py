"""pulse [--env-file FILE] serve|migrate|version|check-db"""

import argparse
import os
import re
import sys
from collections import namedtuple

from . import BROKEN, VERSION
from .migrations import known_migrations, required_schema
from .storage import Database, StorageError, redact_url

Config = namedtuple("Config", "host port database_url")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOUBLE_QUOTE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class ConfigError(Exception):
    pass


def parse_env_file(text, source="env file"):
    """KEY=VALUE lines as systemd's EnvironmentFile and docker compose's .env read them.

    Blank lines and lines starting with # are skipped, "export " is allowed before a key, values may be
    'single quoted' (literal) or "double quoted" (backslash escapes); an unquoted value ends at " #".
    """
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.lstrip()
        if not sep or not _KEY_RE.match(key):
            raise ConfigError(f"{source}:{number}: expected KEY=VALUE, got {raw!r}")
        if value[:1] in ("'", '"'):
            value, rest = _unquote(value, f"{source}:{number}")
            if rest.strip() and not rest.strip().startswith("#"):
                raise ConfigError(f"{source}:{number}: unexpected text after the closing quote: {rest!r}")
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        values[key] = value
    return values


def _unquote(value, where):
    quote, out, i = value[0], [], 1
    while i < len(value):
        char = value[i]
        if char == quote:
            return "".join(out), value[i + 1:]
        if quote == '"' and char == "\\" and i + 1 < len(value):
            i += 1
            out.append(_DOUBLE_QUOTE_ESCAPES.get(value[i], "\\" + value[i]))
        else:
            out.append(char)
        i += 1
    raise ConfigError(f"{where}: unterminated {quote} quote")


def load_config(env_file=None, environ=None):
    """Settings from the env file (if any), overridden by the process environment."""
    values = {}
    if env_file:
        try:
            with open(env_file, encoding="utf-8") as handle:
                values.update(parse_env_file(handle.read(), env_file))
        except OSError as exc:
            raise ConfigError(f"cannot read env file: {exc}") from None
    values.update(os.environ if environ is None else environ)
    port = values.get("PULSE_PORT") or "8080"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"PULSE_PORT must be a TCP port number, got {port!r}")
    return Config(values.get("PULSE_LISTEN_HOST") or "0.0.0.0", int(port), values.get("PULSE_DATABASE_URL") or "")


def open_database(config):
    if not config.database_url:
        raise ConfigError("PULSE_DATABASE_URL is not set (sqlite:////path/pulse.db or postgresql://...)")
    try:
        return Database(config.database_url)
    except StorageError as exc:
        raise ConfigError(str(exc)) from None


def cmd_version(_config):
    print(VERSION)
    return 0


def cmd_migrate(config):
    database = open_database(config)
    try:
        applied = database.migrate(known_migrations())
        schema = database.schema_version()
    except StorageError as exc:
        print(f"pulse: migrate failed on {redact_url(database.url)}: {exc}", file=sys.stderr)
        return 1
    for migration in applied:
        print(f"applied migration {migration.number}: {migration.description}")
    if not applied:
        print("nothing to apply")
    print(f"schema version {schema}")
    return 0


def cmd_check_db(config):
    database = open_database(config)
    required = required_schema()
    try:
        schema = database.schema_version()
    except StorageError as exc:
        print(f"pulse: database unreachable ({redact_url(database.url)}): {exc}", file=sys.stderr)
        return 1
    if schema < required:
        print(f"pulse: schema version {schema} is older than the {required} this code needs: run `pulse migrate`",
              file=sys.stderr)
        return 1
    print(f"ok: schema version {schema} (this code needs {required})")
    return 0


def cmd_serve(config):
    from .server import serve  # not needed by the other commands

    return serve(config, open_database(config))


COMMANDS = {
    "serve": (cmd_serve, "run the HTTP server until SIGTERM/SIGINT"),
    "migrate": (cmd_migrate, "apply the schema migrations this version knows (idempotent)"),
    "version": (cmd_version, "print the version"),
    "check-db": (cmd_check_db, "exit 0 if the database is reachable and its schema is new enough"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pulse", description=f"pulse {VERSION}{' (broken build)' if BROKEN else ''}")
    parser.add_argument("--env-file", help="read KEY=VALUE settings from FILE (the environment wins)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_func, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        # Also accepted after the command; SUPPRESS keeps it from resetting a value given before it.
        cmd.add_argument("--env-file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env_file)
        return COMMANDS[args.command][0](config)
    except ConfigError as exc:
        print(f"pulse: error: {exc}", file=sys.stderr)
        return 2
