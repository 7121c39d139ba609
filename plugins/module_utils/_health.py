# Copyright: shipit.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health probes and the retry loop behind ``shipit.deploy.health_check``.

Private to this collection (leading underscore): no compatibility promise to anything outside it.

A probe makes one attempt and returns an :class:`Outcome`: passed, or the first assertion that
failed, why, and the evidence (HTTP status and body, rc and output, connection error).
:func:`wait_for_health` repeats attempts until the probe has passed ``success_threshold`` times in a
row, the attempts run out, or ``max_wait`` is reached. :func:`summarize` turns the result into the
module's return values and an operator-facing message.

Every failure of the thing being probed -- refused connections, timeouts, TLS errors, a missing
executable -- is an unhealthy attempt, never an exception: the caller decides whether that fails
the task.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import tempfile
import threading
import time
from http.client import HTTPException
from urllib.error import HTTPError

from urllib.parse import urlsplit, urlunsplit

# Characters of a body or command output kept in return values, and quoted in a failure message.
RESULT_TEXT_LIMIT = 1000
MESSAGE_TEXT_LIMIT = 200

_MISSING = object()


def truncate(text, limit):
    """``text`` cut to ``limit`` characters, marked when cut; None stays None."""
    if text is None or len(text) <= limit:
        return text
    return '%s...[truncated, %d chars in total]' % (text[:limit], len(text))


def _one_line(text, limit=MESSAGE_TEXT_LIMIT):
    """``text`` squeezed onto one line and cut short, for quoting inside a message."""
    squeezed = ' '.join(text.split())
    if len(squeezed) <= limit:
        return squeezed
    return squeezed[:limit] + '...'


def show(value):
    """A value the way an operator wrote it in YAML or sees it in JSON: 'text', 3, true, null."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return '[%s]' % ', '.join(show(item) for item in value)
    return json.dumps(value, sort_keys=True, separators=(',', ':'), default=str)


def seconds(value):
    """5 -> '5s', 0.25 -> '0.25s'."""
    return '%gs' % value


class Outcome:
    """What one attempt found.

    ``assertion`` is the check that failed, as text (``status in [200]``), and ``reason`` what was
    found instead (``got 503``). ``error`` is set when there was nothing to assert on: the
    connection failed, the request timed out, the command could not run.
    """

    def __init__(self, passed, assertion=None, reason=None, status=None, body=None, rc=None,
                 stdout=None, stderr=None, error=None):
        self.passed = passed
        self.assertion = assertion
        self.reason = reason
        self.status = status
        self.body = body
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.error = error
        self.attempt = None

    def failed(self, assertion, reason, error=None):
        """This outcome's evidence, marked as failing ``assertion`` because of ``reason``."""
        self.passed = False
        self.assertion = assertion
        self.reason = reason
        self.error = error
        return self

    def evidence(self):
        """The evidence worth quoting after the reason: HTTP status and body, or rc and output."""
        parts = []
        if self.status is not None:
            parts.append('HTTP %d' % self.status)
            if self.body is not None:
                parts.append('body: %s' % (_one_line(self.body) or "''"))
        if self.rc is not None and self.error is None:
            parts.append('rc %d' % self.rc)
            for name, text in (('stdout', self.stdout), ('stderr', self.stderr)):
                if text and text.strip():
                    parts.append('%s: %s' % (name, _one_line(text)))
        return ' (%s)' % ', '.join(parts) if parts else ''

    def explain(self):
        """``<assertion> failed: <reason> (<evidence>)``."""
        return '%s failed: %s%s' % (self.assertion, self.reason, self.evidence())

    def as_dict(self):
        """The ``last_failure`` return value: always the same keys, null where not applicable."""
        return dict(
            attempt=self.attempt,
            assertion=self.assertion,
            reason=self.reason,
            error=self.error,
            status=self.status,
            body=truncate(self.body, RESULT_TEXT_LIMIT),
            rc=self.rc,
            stdout=truncate(self.stdout, RESULT_TEXT_LIMIT),
            stderr=truncate(self.stderr, RESULT_TEXT_LIMIT),
        )


# JSON assertions ---------------------------------------------------------------------------


class PathNotFound(Exception):
    pass


def resolve_path(document, path):
    """The value at a dotted ``path`` (``checks.db.status``, ``items.0.name``) in parsed JSON.

    A segment is a key of an object, or an index of a list (negative counts from the end).
    Raises :class:`PathNotFound` saying where the walk stopped.
    """
    value = document
    walked = []
    for segment in path.split('.'):
        where = "'%s'" % '.'.join(walked) if walked else 'the top level'
        if isinstance(value, dict):
            if segment not in value:
                raise PathNotFound('no key %r at %s' % (segment, where))
            value = value[segment]
        elif isinstance(value, list):
            try:
                index = int(segment)
            except ValueError:
                raise PathNotFound('%s is a list, %r is not an index' % (where, segment))
            if not -len(value) <= index < len(value):
                raise PathNotFound('index %d out of range at %s (list of %d)' % (index, where, len(value)))
            value = value[index]
        else:
            raise PathNotFound('%s is %s, not an object or list' % (where, show(value)))
        walked.append(segment)
    return value


def json_equal(left, right):
    """Equality as JSON means it: true is not 1, 1 is 1.0, containers compared deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, (list, tuple, dict)) or isinstance(right, (list, tuple, dict)):
        return False
    return left == right


class JsonAssertion:
    """One entry of the ``json`` option: ``path`` with exactly one of equals, one_of, present."""

    def __init__(self, path, equals=None, one_of=None, present=None):
        self.path = path
        if present is not None:
            self.op, self.expected = 'present', present
        elif one_of is not None:
            self.op, self.expected = 'one_of', list(one_of)
        else:
            # Also reached by an explicit ``equals: null``, which asserts a JSON null.
            self.op, self.expected = 'equals', equals

    @classmethod
    def from_option(cls, option):
        return cls(option['path'], option.get('equals'), option.get('one_of'), option.get('present'))

    def __str__(self):
        if self.op == 'present':
            return 'json assertion %s is %s' % (self.path, 'present' if self.expected else 'absent')
        return 'json assertion %s %s %s' % (self.path, self.op, show(self.expected))

    def check(self, document):
        """None when the assertion holds, else what was found instead."""
        try:
            value = resolve_path(document, self.path)
        except PathNotFound as exc:
            if self.op == 'present' and not self.expected:
                return None
            return 'path not found: %s' % exc
        if self.op == 'present':
            return None if self.expected else 'got %s' % _one_line(show(value))
        if self.op == 'equals':
            matched = json_equal(value, self.expected)
        else:
            matched = any(json_equal(value, candidate) for candidate in self.expected)
        return None if matched else 'got %s' % _one_line(show(value))


# Probes ------------------------------------------------------------------------------------


def mask_url(url):
    """The URL with its user and password masked (as ansible.module_utils.urls.mask_url)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    userinfo = f"{parts.username}:{parts.password}@" if parts.password else f"{parts.username}@"
    masked = "****:****@" if parts.password else "****@"
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(userinfo, masked)))


def _fetch(module):
    """fetch_url of the module: the host agent's own (standard library, _task.Task.fetch_url) or Ansible's."""
    own = getattr(module, 'fetch_url', None)
    if own is not None:
        return own
    from ansible.module_utils.urls import fetch_url  # only modules reach this: the agent ships no Ansible
    return lambda url, **kwargs: fetch_url(_NonExitingModule(module), url, **kwargs)


class _FetchFailed(Exception):
    pass


class _NonExitingModule:
    """The AnsibleModule as ``fetch_url`` sees it, except that ``fail_json`` raises.

    ``fetch_url`` ends the module itself on TLS validation, proxy and malformed-URL errors. For a
    health check those are one failed attempt: retried, reported with the rest, and subject to
    ``fail_on_unhealthy``.
    """

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    @property
    def tmpdir(self):
        # fetch_url only points tempfile at it, and a health check writes no file: the system's temporary
        # directory spares creating the module's remote_tmp (and Ansible's warning on a host's first run).
        return tempfile.gettempdir()

    def fail_json(self, msg='', **kwargs):
        raise _FetchFailed(msg)


def _request_error(msg):
    """fetch_url's error without its wrapping: '[Errno 111] Connection refused', 'timed out'.

    fetch_url says 'Request failed: <... error [Errno 111] Connection refused>' (urllib's wrapping) or
    'Connection failure: timed out'.
    """
    msg = msg or 'request failed'
    match = re.match(r'^Request failed: <\w+ error (.*)>$', msg, re.DOTALL)
    if match:
        return match.group(1)
    if msg.startswith('Connection failure: '):
        return msg[len('Connection failure: '):]
    return msg


def _os_error(exc):
    """'[Errno 2] No such file or directory: /usr/bin/app' (no bytes repr of the file name)."""
    if exc.strerror and exc.filename is not None:
        name = exc.filename.decode('utf-8', 'replace') if isinstance(exc.filename, bytes) else exc.filename
        return '[Errno %s] %s: %s' % (exc.errno, exc.strerror, name)
    return str(exc) or type(exc).__name__


class HttpProbe:
    kind = 'http'

    def __init__(self, module, url, method='GET', headers=None, body=None, body_json=None,
                 status_codes=(200,), body_regex=None, json_assertions=()):
        self._module = module
        self.url = url
        self.method = method.upper()
        self.headers = dict((str(k), str(v)) for k, v in (headers or {}).items())
        self.data = None
        if body_json is not None:
            self.data = json.dumps(body_json).encode('utf-8')
            if not any(k.lower() == 'content-type' for k in self.headers):
                self.headers['Content-Type'] = 'application/json'
        elif body is not None:
            self.data = body.encode('utf-8')
        self.status_codes = list(status_codes)
        self.body_regex = body_regex
        self._body_re = re.compile(body_regex) if body_regex is not None else None
        self.json_assertions = list(json_assertions)

    def describe(self):
        # mask_url hides a password in user:password@host; header values never appear anywhere.
        return 'http %s %s' % (self.method, mask_url(self.url))

    def attempt(self, timeout):
        status, body, error = self.request(timeout)
        outcome = Outcome(False, status=status, body=body)
        if error is not None:
            return outcome.failed('HTTP request completes within %s' % seconds(timeout), error, error=error)
        return self.evaluate(outcome)

    def request(self, timeout):
        """(status, body text, error): error is None when a response was read completely."""
        try:
            response, info = _fetch(self._module)(self.url, data=self.data, headers=self.headers, method=self.method,
                                                  timeout=timeout)
        except _FetchFailed as exc:
            return None, None, str(exc)
        status = info.get('status', -1)
        if status is None or status < 0 or response is None:
            return None, None, _request_error(info.get('msg'))
        if isinstance(response, HTTPError):
            # 4xx/5xx (and unfollowed 3xx): fetch_url has already read the body into info.
            raw = info.get('body') or b''
        else:
            try:
                raw = response.read()
            except (OSError, HTTPException) as exc:
                return status, None, 'reading the response body failed: %s' % (str(exc) or type(exc).__name__)
            finally:
                response.close()
        if isinstance(raw, bytes):
            raw = raw.decode('utf-8', errors='replace')
        return status, raw, None

    def evaluate(self, outcome):
        """Check a response (``outcome.status``, ``outcome.body``): status, body regex, JSON."""
        if outcome.status not in self.status_codes:
            return outcome.failed('status in %s' % show(self.status_codes), 'got %d' % outcome.status)
        body = outcome.body or ''
        if self._body_re is not None and not self._body_re.search(body):
            return outcome.failed('body matches regex %s' % show(self.body_regex), 'no match')
        if self.json_assertions:
            try:
                document = json.loads(body)
            except ValueError as exc:
                return outcome.failed('body is JSON', 'not JSON: %s' % exc)
            for assertion in self.json_assertions:
                reason = assertion.check(document)
                if reason is not None:
                    return outcome.failed(str(assertion), reason)
        outcome.passed = True
        return outcome


class TcpProbe:
    kind = 'tcp'

    def __init__(self, host, port):
        self.host = host
        self.port = port

    def describe(self):
        return 'tcp %s' % self.address()

    def address(self):
        return '[%s]:%d' % (self.host, self.port) if ':' in self.host else '%s:%d' % (self.host, self.port)

    def attempt(self, timeout):
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                pass
        except OSError as exc:
            error = str(exc) or type(exc).__name__
            return Outcome(False).failed('TCP connect to %s within %s' % (self.address(), seconds(timeout)),
                                         error, error=error)
        return Outcome(True)


class CommandProbe:
    kind = 'command'

    def __init__(self, module, argv, expected_rc=0, stdout_regex=None):
        self._module = module
        self.argv = list(argv)
        self.expected_rc = expected_rc
        self.stdout_regex = stdout_regex
        self._stdout_re = re.compile(stdout_regex) if stdout_regex is not None else None

    def describe(self):
        return 'command %s' % _one_line(shlex.join(self.argv))

    def attempt(self, timeout):
        timed_out = threading.Event()
        timers = []

        def arm_timeout(process):
            # run_command has no timeout of its own: kill the process when the attempt's time is up.
            def kill():
                timed_out.set()
                process.kill()
            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            timer.start()
            timers.append(timer)

        try:
            rc, stdout, stderr = self._module.run_command(
                self.argv, before_communicate_callback=arm_timeout, expand_user_and_vars=False,
                handle_exceptions=False)
        except OSError as exc:
            error = _os_error(exc)
            return Outcome(False).failed('command runs', error, error=error)
        finally:
            for timer in timers:
                timer.cancel()
        outcome = Outcome(False, rc=rc, stdout=stdout, stderr=stderr)
        if timed_out.is_set():
            return outcome.failed('command finishes within %s' % seconds(timeout),
                                  'killed after %s' % seconds(timeout), error='timed out')
        if rc != self.expected_rc:
            return outcome.failed('rc == %d' % self.expected_rc, 'got %d' % rc)
        if self._stdout_re is not None and not self._stdout_re.search(stdout):
            return outcome.failed('stdout matches regex %s' % show(self.stdout_regex), 'no match')
        outcome.passed = True
        return outcome


# The retry loop ----------------------------------------------------------------------------


class WaitResult:
    def __init__(self):
        self.healthy = False
        self.attempts = 0
        self.elapsed = 0.0
        self.passes = 0
        self.best_streak = 0
        self.last = None
        self.last_failure = None
        # Why the loop ended: healthy, retries, max_wait or unreachable (too few attempts left
        # for success_threshold consecutive passes).
        self.stopped = None


# Until a check first passes, its first interval is split into waits of 0.1, 0.2, 0.4... s (QUICK_WAIT doubled).
QUICK_WAIT = 0.1


def wait_for_health(probe, retries=10, interval=1.0, timeout=5.0, initial_delay=0.0, success_threshold=1,
                    max_wait=None, clock=time.monotonic, sleep=time.sleep, quick_wait=QUICK_WAIT):
    """Attempt ``probe`` until it passes ``success_threshold`` times in a row.

    Gives up after ``retries`` attempts, or when ``max_wait`` seconds (counted from the call,
    initial delay included) would be exceeded: no attempt starts after the deadline, and an
    attempt's timeout is cut to the time left. A failed attempt resets the streak of passes.

    When the first attempt fails, the wait before the second is split: attempts after ``quick_wait``,
    then twice that, and so on while they fit in ``interval`` (an app that comes up soon after its start is
    seen then, not a whole interval later). They are extra attempts: ``retries`` and the time it allows are
    unchanged. ``quick_wait=None`` turns them off.
    """
    result = WaitResult()
    start = clock()
    counted = 0  # the attempts that count towards retries (not the quick ones)
    quick, quick_waited, in_quick = quick_wait, 0.0, False
    deadline = start + max_wait if max_wait is not None else None
    if initial_delay > 0:
        sleep(initial_delay)
    while True:
        attempt_timeout = timeout
        if deadline is not None:
            remaining = deadline - clock()
            if remaining <= 0 and result.attempts:
                result.stopped = 'max_wait'
                break
            attempt_timeout = min(timeout, max(remaining, 0.1))
        result.attempts += 1
        counted += 0 if in_quick else 1
        outcome = probe.attempt(attempt_timeout)
        outcome.attempt = result.attempts
        result.last = outcome
        if outcome.passed:
            result.passes += 1
            result.best_streak = max(result.best_streak, result.passes)
            if result.passes >= success_threshold:
                result.healthy = True
                result.stopped = 'healthy'
                break
        else:
            result.passes = 0
            result.last_failure = outcome
        left = retries - counted
        if left <= 0:
            result.stopped = 'retries'
            break
        if result.passes + left < success_threshold:
            result.stopped = 'unreachable'
            break
        in_quick = bool(quick) and not result.best_streak and counted == 1 and quick_waited + quick < interval
        if in_quick:
            wait, quick_waited, quick = quick, quick_waited + quick, quick * 2
        else:
            wait, quick_waited = interval - quick_waited, 0.0
        if deadline is not None and clock() + wait >= deadline:
            result.stopped = 'max_wait'
            break
        sleep(wait)
    result.elapsed = clock() - start
    return result


def summarize(probe, result, success_threshold=1, max_wait=None):
    """(message, return values) for a finished :func:`wait_for_health`."""
    attempts = '%d attempt%s' % (result.attempts, '' if result.attempts == 1 else 's')
    head = 'health check %s' % probe.describe()
    if result.healthy:
        msg = '%s healthy after %s in %.1fs' % (head, attempts, result.elapsed)
        if success_threshold > 1:
            msg += ' (%d consecutive passes)' % result.passes
    else:
        msg = '%s failed after %s in %.1fs: ' % (head, attempts, result.elapsed)
        if result.last is not None and result.last.passed:
            # Flapping: the last attempt passed but the streak never got long enough.
            msg += 'needed %d consecutive passes, got at most %d' % (success_threshold, result.best_streak)
            if result.last_failure is not None:
                msg += '; last failure (attempt %d): %s' % (result.last_failure.attempt,
                                                            result.last_failure.explain())
        else:
            msg += result.last_failure.explain()
            if success_threshold > 1:
                msg += '; needed %d consecutive passes, got at most %d' % (success_threshold, result.best_streak)
        if result.stopped == 'max_wait':
            msg += '; gave up at max_wait %s' % seconds(max_wait)
        elif result.stopped == 'unreachable':
            msg += '; stopped early, too few attempts left to reach %d consecutive passes' % success_threshold
    values = dict(
        healthy=result.healthy,
        attempts=result.attempts,
        elapsed=round(result.elapsed, 3),
        passes=result.passes,
        last_failure=result.last_failure.as_dict() if result.last_failure is not None else None,
    )
    last = result.last
    if probe.kind == 'http':
        values['status'] = last.status if last is not None else None
        values['body'] = truncate(last.body, RESULT_TEXT_LIMIT) if last is not None else None
    elif probe.kind == 'command':
        values['rc'] = last.rc if last is not None else None
        values['stdout'] = truncate(last.stdout, RESULT_TEXT_LIMIT) if last is not None else None
        values['stderr'] = truncate(last.stderr, RESULT_TEXT_LIMIT) if last is not None else None
    return msg, values
