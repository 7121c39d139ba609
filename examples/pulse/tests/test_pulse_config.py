"""Settings: env file (systemd EnvironmentFile / compose .env format) and environment variables."""

import pytest

from pulse.cli import ConfigError, load_config, parse_env_file
from pulse.migrations import known_migrations, required_schema
from pulse import parse_version


def test_parse_env_file_formats():
    text = """
# a comment
PULSE_PORT=9000
  PULSE_LISTEN_HOST = 127.0.0.1
export EXPORTED=yes
DOUBLE="a \\"quoted\\" value # not a comment"
SINGLE='literal \\n $HOME'
UNQUOTED=value # trailing comment
HASH=pa#ss
EMPTY=
URL=postgresql://u:p%40ss@db:5432/pulse
"""
    assert parse_env_file(text) == {
        "PULSE_PORT": "9000",
        "PULSE_LISTEN_HOST": "127.0.0.1",
        "EXPORTED": "yes",
        "DOUBLE": 'a "quoted" value # not a comment',
        "SINGLE": "literal \\n $HOME",
        "UNQUOTED": "value",
        "HASH": "pa#ss",
        "EMPTY": "",
        "URL": "postgresql://u:p%40ss@db:5432/pulse",
    }


@pytest.mark.parametrize("line", ["no equals sign", "1BAD=x", 'OPEN="never closed', "Q='a' junk"])
def test_parse_env_file_rejects_bad_lines(line):
    with pytest.raises(ConfigError, match=":1:"):
        parse_env_file(line, "app.env")


def test_environment_overrides_file(tmp_path):
    env_file = tmp_path / "pulse.env"
    env_file.write_text("PULSE_PORT=9000\nPULSE_DATABASE_URL=sqlite:////from/file.db\n")
    assert load_config(env_file, {}) == ("0.0.0.0", 9000, "sqlite:////from/file.db")
    assert load_config(env_file, {"PULSE_PORT": "9100"}) == ("0.0.0.0", 9100, "sqlite:////from/file.db")
    assert load_config(None, {}) == ("0.0.0.0", 8080, "")
    with pytest.raises(ConfigError, match="PULSE_PORT"):
        load_config(None, {"PULSE_PORT": "http"})
    with pytest.raises(ConfigError, match="cannot read env file"):
        load_config(tmp_path / "missing.env", {})


def test_cli_reads_env_file_before_or_after_command(release, serve, tmp_path):
    app = release("1.0.0")
    env_file = tmp_path / "pulse.env"
    env_file.write_text(f'# written like a systemd EnvironmentFile\nPULSE_DATABASE_URL="sqlite:///{tmp_path}/f.db"\n')
    assert app.run("--env-file", str(env_file), "migrate").returncode == 0
    assert app.run("check-db", "--env-file", str(env_file)).returncode == 0
    # The environment wins over the file: this database was never migrated.
    env = app.env(f"sqlite:///{tmp_path}/other.db")
    assert app.run("--env-file", str(env_file), "check-db", env=env).returncode == 1

    server = serve(app, None, args=("--env-file", str(env_file)))
    assert server.get("/health")[1]["db"] == "ok"

    missing = app.run("--env-file", str(tmp_path / "nope.env"), "version")
    assert missing.returncode == 2 and "cannot read env file" in missing.stderr


def test_migrations_follow_the_version():
    assert [m.number for m in known_migrations("1.0.0")] == [1]
    assert [m.number for m in known_migrations("1.0.9-rc1")] == [1]
    assert [m.number for m in known_migrations("1.1.0-rc1")] == [1, 2]  # the suffix is ignored
    assert [m.number for m in known_migrations("1.10.0")] == [1, 2]  # numeric, not string, comparison
    assert [m.number for m in known_migrations("dev")] == [1, 2]
    assert (required_schema("1.0.0"), required_schema("2.0.0")) == (1, 2)
    assert parse_version("1.2.3-beta.1") == (1, 2, 3)
    assert parse_version("dev") is None
