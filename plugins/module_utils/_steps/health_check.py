# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.health_check: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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


SPEC = dict(
    argument_spec=argument_spec(),
    required_if=[
        ('kind', 'http', ['url']),
        ('kind', 'tcp', ['port']),
        ('kind', 'command', ['argv']),
    ],
    mutually_exclusive=[('body', 'body_json')],
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
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
