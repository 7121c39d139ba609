"""Progress as it happens: one line per host and stage when the host leaves the stage, with the time since
the run started and the stage's own duration. On a terminal a status line below shows the task running now;
in CI (not a terminal, or CI set) only the plain lines are written."""

import os
import shutil
import sys
import threading
import time

_STATUS_WORD = {"ok": "ok", "changed": "changed", "skipped": "skipped", "failed": "FAILED",
                "unreachable": "UNREACHABLE"}


class Progress:
    def __init__(self, stream=None, interactive=None, started=None):
        self.stream = stream or sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)()) and not os.environ.get("CI")
        self.interactive = interactive
        self.started = started if started is not None else time.monotonic()
        self._status = ""
        self._lock = threading.Lock()

    def elapsed(self):
        return time.monotonic() - self.started

    def _write_line(self, text):
        with self._lock:
            if self.interactive and self._status:
                self.stream.write("\r\033[K")
            self.stream.write(text + "\n")
            if self.interactive and self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def line(self, text):
        self._write_line(f"[{self.elapsed():7.1f}s] {text}")

    def stage_end(self, host, record):
        word = _STATUS_WORD.get(record.status, record.status)
        text = f"{host:<16} {record.name:<14} {word:<11} {record.duration:6.1f}s"
        if record.tasks:
            text += f"  {record.tasks} task{'s' if record.tasks != 1 else ''}"
            if record.changed:
                text += f", {record.changed} changed"
        if record.message:
            text += f"  {record.message if len(record.message) <= 400 else record.message[:397] + '...'}"
        self.line(text)

    def task_start(self, host, stage, task):
        if not self.interactive:
            return
        with self._lock:
            self._status = f"  … {host} {stage}: {task or ''}"[:max(20, _columns() - 1)]
            self.stream.write("\r\033[K" + self._status)
            self.stream.flush()

    def done(self):
        if self.interactive and self._status:
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._status = ""


def _columns():
    columns = shutil.get_terminal_size(fallback=(100, 24)).columns
    return columns if columns >= 40 else 100
