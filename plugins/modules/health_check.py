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
      - Total number of attempts, the first included, O(interval) apart.
      - When the first attempt fails, quick extra attempts follow it 0.1, 0.3, 0.7... seconds later (each wait
        twice the one before) while they fit in the first O(interval), so a service that comes up soon after its
        start is seen then. They do not count here and add no time.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import health_check as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
