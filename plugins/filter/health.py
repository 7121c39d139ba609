# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the health checks: under traffic switching a slot is checked on its own port
(health_checks_on_port) and a release that got the traffic is baked (health_checks_baked); every check becomes
a step of the host agent (health_check_steps).

Documented in health_checks_on_port.yml, health_checks_baked.yml and health_check_steps.yml next to this file.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit, urlunsplit

from ansible.errors import AnsibleFilterError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# health_check's default interval between attempts.
DEFAULT_INTERVAL = 1.0


def _checks(checks, name):
    if not isinstance(checks, list) or not all(isinstance(check, dict) for check in checks):
        raise AnsibleFilterError(f"{name} needs a list of health checks (dicts of shipit.deploy.health_check options)")
    return checks


def health_checks_on_port(checks, public_port, slot_port):
    """The checks with every call of the public port on the host itself sent to the slot's port instead."""
    public_port, slot_port = int(public_port), int(slot_port)
    moved = []
    for check in _checks(checks, "health_checks_on_port"):
        check = dict(check)
        if check.get("kind") == "http" and check.get("url"):
            parts = urlsplit(check["url"])
            if parts.hostname in LOOPBACK and (parts.port or {"http": 80, "https": 443}.get(parts.scheme)) == public_port:
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                userinfo = parts.netloc.rpartition("@")[0]
                check["url"] = urlunsplit(parts._replace(netloc=(userinfo + "@" if userinfo else "") + f"{host}:{slot_port}"))
        elif check.get("kind") == "tcp" and check.get("host", "127.0.0.1") in LOOPBACK \
                and int(check.get("port") or 0) == public_port:
            check["port"] = slot_port
        moved.append(check)
    return moved


def health_checks_baked(checks, seconds):
    """The checks repeated for about ``seconds`` each, the first failure failing the check at once."""
    seconds = float(seconds)
    if seconds <= 0:
        return _checks(checks, "health_checks_baked")
    baked = []
    for check in _checks(checks, "health_checks_baked"):
        interval = float(check.get("interval", DEFAULT_INTERVAL)) or DEFAULT_INTERVAL
        attempts = max(1, math.ceil(seconds / interval))
        # success_threshold == retries: one failed attempt leaves too few to reach it, so the check stops there.
        # No initial delay and no max_wait of the check's own: the bake is the bound.
        check = {key: value for key, value in check.items() if key not in ("initial_delay", "max_wait")}
        baked.append(dict(check, retries=attempts, success_threshold=attempts,
                          name=f"{check.get('name', check.get('kind', 'check'))} (bake {seconds:g}s)"))
    return baked


def health_check_steps(checks):
    """One step of shipit.deploy.agent per check, named by the check's name (numbered when names repeat)."""
    steps, seen = [], set()
    for index, check in enumerate(_checks(checks, "health_check_steps"), start=1):
        name = str(check.get("name") or check.get("kind") or "check")
        if name in seen:
            name = f"{name} ({index})"
        seen.add(name)
        steps.append({"name": name, "module": "health_check",
                      "args": {key: value for key, value in check.items() if key != "name"}})
    return steps


class FilterModule:
    def filters(self):
        return {"health_checks_on_port": health_checks_on_port, "health_checks_baked": health_checks_baked,
                "health_check_steps": health_check_steps}
