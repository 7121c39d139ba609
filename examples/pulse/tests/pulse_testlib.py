"""Helpers shared by pulse's tests (a uniquely named module: `conftest` is a name every test dir uses)."""

import importlib.util
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

PULSE_DIR = Path(__file__).resolve().parents[1]
SRC = PULSE_DIR / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# build.py is a script, not a package: load it under a name that cannot clash with PyPI's `build`.
_spec = importlib.util.spec_from_file_location("pulse_build", PULSE_DIR / "build.py")
pulse_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pulse_build)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PASSWORDS = {  # role -> password; odd characters on purpose (DSN percent-encoding, SQL quoting)
    "postgres": "super-secret",
    "pulse": "p@ss:w/rd#1 'q\"",
    "pulse_md5": "md5-pw'x",
    "pulse_plain": "plain pw",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=5):
    """(status, parsed JSON body) for any status, 4xx/5xx included."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
