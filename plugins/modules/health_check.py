#!/usr/bin/python
# Copyright: shipit.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: health_check
short_description: Wait until a service on the target host is healthy
version_added: 0.1.0
description:
  - Probes a service from the target host, repeatedly, until it passes or the attempts run out.
  - The probe is an HTTP request with assertions on status, body and JSON content (O(kind=http)),
    a TCP connect (O(kind=tcp)), or a command with an expected exit code and output (O(kind=command)).
  - O(success_threshold) consecutive passes are needed; a failed attempt resets the count, so a
    service that flaps between healthy and unhealthy is not reported healthy.
  - The total time is bounded. Without O(max_wait) it is at most
    O(initial_delay) + O(retries) * O(timeout) + (O(retries) - 1) * O(interval) seconds
    (for O(kind=http) the timeout applies to each network operation of a request);
    O(max_wait) bounds it further.
  - >-
    When the service is unhealthy the module fails (see O(fail_on_unhealthy)) with a message naming the
    check, the number of attempts, the elapsed time, the assertion that failed and the evidence,
    for example C(health check http GET http://127.0.0.1:8080/health failed after 10 attempts in 9.3s:
    json assertion status equals 'healthy' failed: got 'unhealthy' (HTTP 200, body: {"status":"unhealthy"})).
  - Read-only. It never reports a change, and it probes in check mode too.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
    details:
      - The probe changes nothing, so it runs in check mode exactly as it does otherwise.
  diff_mode:
    support: none
options:
  kind:
    description:
      - What to probe.
      - V(http) sends a request to O(url) and checks O(status_codes), O(body_regex) and O(json).
      - V(tcp) connects to O(host):O(port).
      - V(command) runs O(argv) and checks O(expected_rc) and O(stdout_regex).
    type: str
    required: true
    choices: [http, tcp, command]
  url:
    description:
      - The V(http://) or V(https://) URL to request, as seen from the target host.
      - Required with O(kind=http).
      - Redirects are followed for V(GET) and V(HEAD).
    type: str
  method:
    description:
      - HTTP method.
    type: str
    default: GET
  headers:
    description:
      - HTTP request headers.
      - Values may be secrets (C(Authorization)). They never appear in messages, and Ansible masks
        each header value wherever it would appear in the output, response bodies included.
    type: dict
  body:
    description:
      - Request body, sent as is (UTF-8).
    type: str
  body_json:
    description:
      - >-
        Request body, serialised as JSON. Sets C(Content-Type: application/json) unless O(headers) sets a content type.
    type: raw
  status_codes:
    description:
      - HTTP status codes that count as a pass.
    type: list
    elements: int
    default: [200]
  body_regex:
    description:
      - Python regular expression that must be found (C(re.search)) in the response body.
    type: str
  json:
    description:
      - Assertions on the response body parsed as JSON, checked in order; the first that fails is reported.
      - A body that is not JSON fails the attempt.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - Dotted path to the value, such as V(status), V(checks.db.state) or V(items.0.name).
          - Each segment is an object key, or an index into a list (negative counts from the end).
            Keys containing a dot cannot be addressed.
        type: str
        required: true
      equals:
        description:
          - The value at O(json[].path) must equal this, compared as JSON (V(true) is not V(1), V(1) equals V(1.0)).
          - V(null) asserts a JSON C(null).
          - Exactly one of O(json[].equals), O(json[].one_of) and O(json[].present) is required.
        type: raw
      one_of:
        description:
          - The value at O(json[].path) must equal one of these.
        type: list
        elements: raw
      present:
        description:
          - V(true) asserts that O(json[].path) exists, V(false) that it does not.
        type: bool
  validate_certs:
    description:
      - Whether to validate TLS certificates of V(https://) URLs.
    type: bool
    default: true
  use_proxy:
    description:
      - Whether to use a proxy from the environment (C(https_proxy), C(http_proxy), C(no_proxy)) for O(url).
    type: bool
    default: true
  host:
    description:
      - Host to connect to with O(kind=tcp), as seen from the target host.
    type: str
    default: 127.0.0.1
  port:
    description:
      - TCP port to connect to. Required with O(kind=tcp).
    type: int
  argv:
    description:
      - Command to run with O(kind=command), as a list of program and arguments. No shell is involved
        and nothing is expanded, so V(~) and V($VAR) are passed literally.
      - Required with O(kind=command).
      - A command that outlives O(timeout) is killed (the process itself, not processes it started).
    type: list
    elements: str
  expected_rc:
    description:
      - Exit code of O(argv) that counts as a pass.
    type: int
    default: 0
  stdout_regex:
    description:
      - Python regular expression that must be found (C(re.search)) in the standard output of O(argv).
    type: str
  retries:
    description:
      - Total number of attempts, the first included.
    type: int
    default: 10
  interval:
    description:
      - Seconds to wait between attempts.
    type: float
    default: 1
  timeout:
    description:
      - Seconds allowed for each attempt.
    type: float
    default: 5
  initial_delay:
    description:
      - Seconds to wait before the first attempt. Counts towards O(max_wait); must be less than it.
    type: float
    default: 0
  success_threshold:
    description:
      - Consecutive passes needed to report healthy. A failed attempt starts the count again.
      - Must not exceed O(retries). The module stops early once too few attempts are left to reach it.
    type: int
    default: 1
  max_wait:
    description:
      - Upper bound in seconds on the whole check, counted from the start and including O(initial_delay).
      - No attempt starts after it, and an attempt's O(timeout) is shortened to the time left.
      - By default only O(retries) bounds the check.
    type: float
  fail_on_unhealthy:
    description:
      - Whether to fail the task when the service is unhealthy.
      - With V(false) the task succeeds and RV(healthy) says whether the service is healthy.
    type: bool
    default: true
notes:
  - Runs on the target host, so V(127.0.0.1) is the target itself.
seealso:
  - module: ansible.builtin.uri
    description: Make a single HTTP request with more options.
  - module: ansible.builtin.wait_for
    description: Wait for a port, a file or a string in a file.
"""

EXAMPLES = r"""
- name: Wait for the app to report itself and its database healthy
  shipit.deploy.health_check:
    kind: http
    url: http://127.0.0.1:8080/health
    status_codes: [200]
    json:
      - path: status
        equals: healthy
      - path: checks.db.state
        one_of: [up, degraded]
      - path: errors.0
        present: false
    retries: 30
    interval: 2
    max_wait: 90

- name: Check an authenticated endpoint without failing the task
  shipit.deploy.health_check:
    kind: http
    url: https://127.0.0.1:8443/internal/ready
    headers:
      Authorization: "Bearer {{ app_health_token }}"
    body_regex: '^ready\b'
    validate_certs: false
    fail_on_unhealthy: false
  register: app_ready

- name: Wait for PostgreSQL to accept connections
  shipit.deploy.health_check:
    kind: tcp
    host: 127.0.0.1
    port: 5432
    retries: 20
    interval: 0.5
    timeout: 2

- name: Ask the service manager whether the unit is running
  shipit.deploy.health_check:
    kind: command
    argv: [systemctl, is-active, app.service]
    expected_rc: 0
    stdout_regex: '^active$'

- name: Pass only after five healthy answers in a row, so a crash-looping release is caught
  shipit.deploy.health_check:
    kind: http
    url: http://127.0.0.1:8080/health
    initial_delay: 3
    success_threshold: 5
    retries: 15
    interval: 1
"""

RETURN = r"""
healthy:
  description: Whether the service passed O(success_threshold) consecutive attempts.
  returned: always
  type: bool
  sample: true
attempts:
  description: Number of attempts made.
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds the check took, O(initial_delay) included.
  returned: always
  type: float
  sample: 2.013
passes:
  description: Consecutive passes at the end of the check.
  returned: always
  type: int
  sample: 1
last_failure:
  description:
    - The most recent failed attempt, or V(null) if no attempt failed.
    - All keys are always present, V(null) where they do not apply to O(kind).
  returned: always
  type: dict
  contains:
    attempt:
      description: Number of the attempt, counted from 1.
      type: int
      sample: 3
    assertion:
      description: The check that failed, as text.
      type: str
      sample: json assertion status equals 'healthy'
    reason:
      description: What was found instead.
      type: str
      sample: got 'unhealthy'
    error:
      description: The connection, timeout or execution error, when there was no response to check.
      type: str
      sample: "[Errno 111] Connection refused"
    status:
      description: HTTP status of the response.
      type: int
      sample: 503
    body:
      description: Response body, truncated to 1000 characters.
      type: str
      sample: '{"status": "unhealthy"}'
    rc:
      description: Exit code of the command.
      type: int
      sample: 3
    stdout:
      description: Standard output of the command, truncated to 1000 characters.
      type: str
      sample: inactive
    stderr:
      description: Standard error of the command, truncated to 1000 characters.
      type: str
      sample: ''
status:
  description: HTTP status of the last response, V(null) if the last attempt got none.
  returned: O(kind=http)
  type: int
  sample: 200
body:
  description: Body of the last response, truncated to 1000 characters.
  returned: O(kind=http)
  type: str
  sample: '{"status": "healthy"}'
rc:
  description: Exit code of the last run of the command.
  returned: O(kind=command)
  type: int
  sample: 0
stdout:
  description: Standard output of the last run of the command, truncated to 1000 characters.
  returned: O(kind=command)
  type: str
  sample: active
stderr:
  description: Standard error of the last run of the command, truncated to 1000 characters.
  returned: O(kind=command)
  type: str
  sample: ''
msg:
  description: What was checked and the verdict; on failure, the assertion that failed and the evidence.
  returned: always
  type: str
  sample: health check http GET http://127.0.0.1:8080/health healthy after 3 attempts in 2.0s
"""

import re
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._health import (
    CommandProbe,
    HttpProbe,
    JsonAssertion,
    TcpProbe,
    summarize,
    wait_for_health,
)

# Options that only make sense for one kind (those without a default): setting one for another
# kind is a mistake worth reporting, such as a url with kind=tcp.
KIND_OPTIONS = dict(
    http=('url', 'headers', 'body', 'body_json', 'body_regex', 'json'),
    tcp=('port',),
    command=('argv', 'stdout_regex'),
)


def argument_spec():
    return dict(
        kind=dict(type='str', required=True, choices=['http', 'tcp', 'command']),
        url=dict(type='str'),
        method=dict(type='str', default='GET'),
        headers=dict(type='dict', no_log=True),
        body=dict(type='str'),
        body_json=dict(type='raw'),
        status_codes=dict(type='list', elements='int', default=[200]),
        body_regex=dict(type='str'),
        json=dict(
            type='list',
            elements='dict',
            options=dict(
                path=dict(type='str', required=True),
                equals=dict(type='raw'),
                one_of=dict(type='list', elements='raw'),
                present=dict(type='bool'),
            ),
            mutually_exclusive=[('equals', 'one_of', 'present')],
            required_one_of=[('equals', 'one_of', 'present')],
        ),
        validate_certs=dict(type='bool', default=True),
        use_proxy=dict(type='bool', default=True),
        host=dict(type='str', default='127.0.0.1'),
        port=dict(type='int'),
        argv=dict(type='list', elements='str'),
        expected_rc=dict(type='int', default=0),
        stdout_regex=dict(type='str'),
        retries=dict(type='int', default=10),
        interval=dict(type='float', default=1),
        timeout=dict(type='float', default=5),
        initial_delay=dict(type='float', default=0),
        success_threshold=dict(type='int', default=1),
        max_wait=dict(type='float'),
        fail_on_unhealthy=dict(type='bool', default=True),
    )


def url_problem(url):
    """What is wrong with ``url``, if anything; never quotes it, as it may carry credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        return 'url is not a valid URL: %s' % exc
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        return 'url must be an http:// or https:// URL with a host, got scheme %r' % parts.scheme
    return None


def invalid_options(params):
    """What is wrong with option values that the argument spec cannot express, one line each."""
    problems = []
    kind = params['kind']
    for other_kind, names in KIND_OPTIONS.items():
        if other_kind != kind:
            problems.extend('%s applies only to kind=%s, not kind=%s' % (name, other_kind, kind)
                            for name in names if params[name] is not None)

    def at_least(name, minimum, strict=False):
        value = params[name]
        if value is not None and (value <= minimum if strict else value < minimum):
            problems.append('%s must be %s %s, got %s' % (name, 'greater than' if strict else 'at least',
                                                          minimum, value))

    at_least('retries', 1)
    at_least('success_threshold', 1)
    at_least('interval', 0)
    at_least('initial_delay', 0)
    at_least('timeout', 0, strict=True)
    at_least('max_wait', 0, strict=True)
    if params['success_threshold'] > params['retries'] >= 1:
        problems.append('success_threshold (%d) cannot exceed retries (%d)'
                        % (params['success_threshold'], params['retries']))
    if params['max_wait'] is not None and params['initial_delay'] >= params['max_wait'] > 0:
        problems.append('initial_delay (%g) must be less than max_wait (%g)'
                        % (params['initial_delay'], params['max_wait']))

    if kind == 'http':
        problem = url_problem(params['url'])
        if problem:
            problems.append(problem)
        for name, value in (params['headers'] or {}).items():
            # Checked here because http.client's own error quotes the value, which may be a secret.
            if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", str(name)):
                problems.append('headers: %r is not a valid header name' % name)
            elif re.search(r'[\r\n\0]', str(value)):
                problems.append('headers: the value of %s contains a line break or NUL' % name)
        if not re.match(r'^[A-Za-z]+$', params['method']):
            problems.append('method must be an HTTP method such as GET, got %r' % params['method'])
        if not params['status_codes']:
            problems.append('status_codes must list at least one status code')
        bad_codes = [code for code in params['status_codes'] if not 100 <= code <= 599]
        if bad_codes:
            problems.append('status_codes must be HTTP status codes (100-599), got %s' % bad_codes)
        for index, assertion in enumerate(params['json'] or []):
            if not assertion['path']:
                problems.append('json[%d].path must not be empty' % index)
            if assertion['one_of'] == []:
                problems.append('json[%d].one_of must list at least one value' % index)
    if kind == 'tcp' and not 1 <= params['port'] <= 65535:
        problems.append('port must be between 1 and 65535, got %d' % params['port'])
    if kind == 'command' and not params['argv']:
        problems.append('argv must name a program to run')
    for name in ('body_regex', 'stdout_regex'):
        if params[name] is not None:
            try:
                re.compile(params[name])
            except re.error as exc:
                problems.append('%s is not a valid regular expression: %s' % (name, exc))
    return problems


def build_probe(module):
    params = module.params
    if params['kind'] == 'http':
        return HttpProbe(
            module,
            params['url'],
            method=params['method'],
            headers=params['headers'],
            body=params['body'],
            body_json=params['body_json'],
            status_codes=params['status_codes'],
            body_regex=params['body_regex'],
            json_assertions=[JsonAssertion.from_option(option) for option in params['json'] or []],
        )
    if params['kind'] == 'tcp':
        return TcpProbe(params['host'], params['port'])
    return CommandProbe(module, params['argv'], expected_rc=params['expected_rc'],
                        stdout_regex=params['stdout_regex'])


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[
            ('kind', 'http', ['url']),
            ('kind', 'tcp', ['port']),
            ('kind', 'command', ['argv']),
        ],
        mutually_exclusive=[('body', 'body_json')],
        supports_check_mode=True,
    )
    params = module.params
    problems = invalid_options(params)
    if problems:
        module.fail_json(msg='invalid options for health_check: %s' % '; '.join(problems))

    probe = build_probe(module)
    result = wait_for_health(
        probe,
        retries=params['retries'],
        interval=params['interval'],
        timeout=params['timeout'],
        initial_delay=params['initial_delay'],
        success_threshold=params['success_threshold'],
        max_wait=params['max_wait'],
    )
    msg, values = summarize(probe, result, success_threshold=params['success_threshold'],
                            max_wait=params['max_wait'])
    if not result.healthy and params['fail_on_unhealthy']:
        module.fail_json(msg=msg, changed=False, **values)
    module.exit_json(msg=msg, changed=False, **values)


if __name__ == '__main__':
    main()
