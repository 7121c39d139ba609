"""The HTTP server: /health, /version, /visits. JSON in and out, one log line per request on stderr."""

import json
import signal
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import BROKEN, VERSION
from .migrations import required_schema
from .storage import StorageError, redact_url

MAX_BODY = 64 * 1024


def log(message):
    print(f"pulse: {message}", file=sys.stderr, flush=True)


class PulseServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still running must not delay shutdown
    block_on_close = False

    def __init__(self, address, database):
        self.database = database
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server_version = f"pulse/{VERSION}"
    sys_version = ""

    # -- routes: each returns (status, JSON body) ---------------------------------------------------

    def get_health(self):
        required = required_schema()
        try:
            schema = self.server.database.schema_version()
            if schema >= required:
                db = "ok"
            else:
                db = f"schema version {schema} is older than the {required} this code needs: run `pulse migrate`"
        except StorageError as exc:
            schema, db = None, str(exc)
        healthy = db == "ok" and not BROKEN
        body = {"status": "healthy" if healthy else "unhealthy", "version": VERSION, "db": db, "schema": schema}
        if BROKEN:
            body["reason"] = "deliberately broken build"
        return (200 if healthy else 503), body

    def get_version(self):
        return 200, {"version": VERSION}

    def get_visits(self):
        return 200, {"count": self.server.database.count_visits()}

    def post_visits(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return 413, {"error": f"body larger than {MAX_BODY} bytes"}
        raw = self.rfile.read(length) if length > 0 else b""
        path = None
        if raw.strip():
            try:
                payload = json.loads(raw)
            except ValueError:
                return 400, {"error": "body must be JSON, e.g. {\"path\": \"/\"}"}
            if not isinstance(payload, dict) or not isinstance(payload.get("path"), (str, type(None))):
                return 400, {"error": "body must be a JSON object whose \"path\" is a string"}
            path = payload.get("path")
        # The user_agent column exists from migration 2 on, which code of 1.1.0 and later requires.
        with_user_agent = required_schema() >= 2
        visit_id = self.server.database.add_visit(path, self.headers.get("User-Agent"), with_user_agent)
        return 201, {"id": visit_id}

    ROUTES = {
        ("GET", "/health"): get_health,
        ("GET", "/version"): get_version,
        ("GET", "/visits"): get_visits,
        ("POST", "/visits"): post_visits,
    }

    # -- plumbing ------------------------------------------------------------------------------------

    def _dispatch(self, method):
        path = urlsplit(self.path).path
        route = self.ROUTES.get((method, path))
        if route is None:
            if any(known == path for _, known in self.ROUTES):
                status, body = 405, {"error": f"method {method} not allowed on {path}"}
            else:
                status, body = 404, {"error": "not found", "path": path}
        else:
            try:
                status, body = route(self)
            except StorageError as exc:
                status, body = 503, {"error": f"database: {exc}"}
            except Exception:  # keep serving; the traceback goes to the log
                traceback.print_exc(file=sys.stderr)
                status, body = 500, {"error": "internal error"}
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def log_request(self, code="-", size="-"):
        log(f'{self.client_address[0]} "{self.requestline}" {code}')

    def log_message(self, format, *args):
        log(f"{self.client_address[0]} {format % args}")


def serve(config, database):
    """Serve until SIGTERM or SIGINT, then exit 0 promptly (pulse runs as PID 1 in containers)."""
    stop = threading.Event()
    received = []

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    # Installed before anything else: a signal during startup must stop us cleanly too.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = PulseServer((config.host, config.port), database)
    except OSError as exc:
        log(f"error: cannot listen on {config.host}:{config.port}: {exc}")
        return 1
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    log(f"{VERSION}{' (BROKEN BUILD)' if BROKEN else ''} listening on {config.host}:{config.port}, "
        f"database {redact_url(database.url)}, needs schema {required_schema()}")
    # Serving happens in the thread: the main thread only waits, so the signal handler runs at once.
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    log(f"stopped on {received[0] if received else 'request'}")
    return 0
