# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the compose_stack role: which image each service comes from, the pinned release file, why a stack is
not up and which slot runs a release.

Documented in the .yml files of the same names next to this file.
"""

from __future__ import annotations

import copy
import json
import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.shipit.deploy.plugins.module_utils._release import SLOTS

SOURCES = ("load", "pull", "build", "local")
SPEC_KEYS = ("source", "ref", "archive", "id", "context", "dockerfile", "build_args")
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
# Docker Engine 25 is the first to accept healthcheck.start_interval; older engines reject the container.
START_INTERVAL_ENGINE = 25


def _services(definition):
    if not isinstance(definition, dict) or not isinstance(definition.get("services"), dict) \
            or not definition["services"]:
        raise AnsibleFilterError("the Compose definition has no services: give a mapping with a 'services' key")
    for name, service in definition["services"].items():
        if not SERVICE_NAME.match(str(name)):
            raise AnsibleFilterError(f"Compose service name {name!r} is not valid")
        if service is not None and not isinstance(service, dict):
            raise AnsibleFilterError(f"Compose service {name} is not a mapping")
    return definition["services"]


def compose_image_specs(definition, images=None, default_source="pull", staging_dir=None, archive_ids=None):
    """One image spec per service of the definition, as a list for shipit.deploy.compose_images.

    ``images`` maps services to {source, ref, archive, context, dockerfile, build_args}; a service it does
    not list comes from ``default_source`` with its own ``image`` as the ref. With ``staging_dir`` the
    archives of ``load`` specs are named by where the role ships them on the host
    (``<staging_dir>/<service>.image.tar``), and ``archive_ids`` adds the image ID read from each archive.
    """
    services = _services(definition)
    images = images or {}
    if not isinstance(images, dict):
        raise AnsibleFilterError("the images of the stack must be a mapping of service names to image specs")
    unknown = sorted(set(images) - set(services))
    if unknown:
        raise AnsibleFilterError(f"images are configured for services the Compose definition does not have: {', '.join(unknown)}")
    if default_source not in SOURCES:
        raise AnsibleFilterError(f"the default image source must be one of {', '.join(SOURCES)}, got {default_source!r}")
    specs = []
    for name in sorted(services):
        given = images.get(name) or {}
        if not isinstance(given, dict):
            raise AnsibleFilterError(f"the image spec of service {name} is not a mapping")
        extra = sorted(set(given) - set(SPEC_KEYS))
        if extra:
            raise AnsibleFilterError(f"the image spec of service {name} has unknown keys: {', '.join(extra)}")
        spec = {key: value for key, value in given.items() if value not in (None, "")}
        if "source" not in spec:
            spec["source"] = "load" if spec.get("archive") else ("build" if spec.get("context") else default_source)
        if spec["source"] not in SOURCES:
            raise AnsibleFilterError(f"the image source of service {name} must be one of {', '.join(SOURCES)}, got {spec['source']!r}")
        if spec["source"] != "load":
            spec.setdefault("ref", (services[name] or {}).get("image"))
            if not spec["ref"]:
                raise AnsibleFilterError(
                    f"service {name} has no image: give it an 'image' in the Compose definition or a ref, "
                    "archive or build context in the stack's images")
        elif not spec.get("archive"):
            raise AnsibleFilterError(f"the image of service {name} is loaded from an archive, but no archive is given")
        if staging_dir and spec["source"] == "load":
            spec["archive"] = os.path.join(staging_dir, f"{name}.image.tar")
            if archive_ids and archive_ids.get(name):
                spec["id"] = archive_ids[name]
        specs.append(dict(service=name, **spec))
    return specs


def _engine_major(engine_version):
    match = re.match(r"^\s*(\d+)", str(engine_version or ""))
    return int(match.group(1)) if match else None


def compose_pin(definition, project, images, service_defaults=None, engine_version=None, slots=None):
    """The release's Compose model: every service's image pinned by ID, the defaults filled in.

    - ``name`` is the project (the application), so ``docker compose`` finds the stack from any directory;
    - every service runs ``image: <sha256 id>`` with ``pull_policy: never`` and without ``build``;
    - each key of ``service_defaults`` (e.g. init, logging) is set on services that do not set it themselves;
    - ``healthcheck.start_interval`` is left out on engines older than 25, which reject it;
    - with ``slots`` ({service, ports: {slot: port}, container_port}) the service that takes the traffic is
      replaced by one copy per slot, ``<service>-<slot>``, published on ``127.0.0.1:<slot port>`` only.
    """
    services = _services(definition)
    if not isinstance(images, dict):
        raise AnsibleFilterError("the pinned images must be a mapping of service names to image IDs")
    missing = sorted(name for name in services if not IMAGE_ID.match(str(images.get(name) or "")))
    if missing:
        raise AnsibleFilterError(f"services without a pinned image ID (sha256:...): {', '.join(missing)}")
    defaults = service_defaults or {}
    if not isinstance(defaults, dict):
        raise AnsibleFilterError("the service defaults must be a mapping")
    major = _engine_major(engine_version)
    pinned = copy.deepcopy(definition)
    pinned["name"] = project
    for name, service in list(pinned["services"].items()):
        service = dict(service or {})
        service.pop("build", None)
        service["image"] = images[name]
        service["pull_policy"] = "never"
        for key, value in defaults.items():
            if key not in service:
                service[key] = copy.deepcopy(value)
        healthcheck = service.get("healthcheck")
        if isinstance(healthcheck, dict) and "start_interval" in healthcheck and \
                (major is None or major < START_INTERVAL_ENGINE):
            healthcheck = dict(healthcheck)
            healthcheck.pop("start_interval")
            service["healthcheck"] = healthcheck
        pinned["services"][name] = service
    return _slotted(pinned, slots) if slots else pinned


def _slotted(pinned, slots):
    """The traffic service in one copy per slot; the other services (a database) stay single."""
    if not isinstance(slots, dict) or not isinstance(slots.get("ports"), dict) or not slots["ports"]:
        raise AnsibleFilterError("the slots must be a mapping with service, ports (a port per slot) and container_port")
    name = slots.get("service")
    services = pinned["services"]
    if name not in services:
        raise AnsibleFilterError(
            f"the traffic service {name!r} is not a service of the Compose definition (it has {', '.join(sorted(services))}): "
            "set compose_stack_traffic_service")
    dependants = sorted(other for other, service in services.items()
                        if other != name and name in (service.get("depends_on") or ()))
    if dependants:
        raise AnsibleFilterError(f"{', '.join(dependants)} depend on the traffic service {name}, which runs in slots: "
                                 "only the traffic service may depend on the others")
    service = services.pop(name)
    service.pop("container_name", None)
    for slot, port in sorted(slots["ports"].items()):
        copy_ = copy.deepcopy(service)
        copy_["ports"] = [f"127.0.0.1:{int(port)}:{int(slots['container_port'])}"]
        services[f"{name}-{slot}"] = copy_
    return pinned


def compose_problems(containers):
    """Why a stack is not up, one line per container that is not running or not healthy.

    ``containers`` is ``docker inspect`` output (its JSON text or the parsed list). An unhealthy container is
    reported with the last line of its last healthcheck output, a stopped one with its exit code.
    """
    if isinstance(containers, str):
        try:
            containers = json.loads(containers or "[]")
        except ValueError:
            return []
    problems = []
    for container in containers or []:
        if not isinstance(container, dict):
            continue
        name = str(container.get("Name", "?")).lstrip("/")
        state = container.get("State") or {}
        status = state.get("Status", "unknown")
        health = state.get("Health") or {}
        if status != "running":
            detail = f"exit code {state.get('ExitCode')}" if status == "exited" else ""
            error = (state.get("Error") or "").strip()
            problems.append(f"{name} is {status}" + (f" ({detail})" if detail else "") + (f": {error}" if error else ""))
        elif health and health.get("Status") != "healthy":
            lines = [line for line in str(((health.get("Log") or [{}])[-1]).get("Output", "")).splitlines() if line.strip()]
            problems.append(f"{name} is {health.get('Status')}" + (f", last health check: {lines[-1].strip()[:300]}" if lines else ""))
    return sorted(problems)


def compose_running_slot(lines, service, release_dir):
    """The slot whose copy of the traffic service runs release_dir, or None.

    ``lines`` are ``docker ps`` lines of the project formatted as ``<service>\t<state>\t<working dir>`` (the
    labels Compose puts on a container: its service and the project directory it was created from).
    """
    for line in lines or []:
        fields = str(line).split("\t")
        if len(fields) != 3:
            continue
        name, state, working_dir = fields
        for slot in SLOTS:
            if name == f"{service}-{slot}" and state == "running" and working_dir.rstrip("/") == str(release_dir).rstrip("/"):
                return slot
    return None


class FilterModule:
    def filters(self):
        return {"compose_image_specs": compose_image_specs, "compose_pin": compose_pin, "compose_problems": compose_problems,
                "compose_running_slot": compose_running_slot}
