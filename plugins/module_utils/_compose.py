# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker images of Compose releases: make them present, pin them by ID, prune the unreferenced ones.

Private to shipit.deploy (used by the compose_images and compose_prune bodies, _steps). Talks to the engine
through the Docker CLI only (no Docker SDK on the target host), through a ``run(argv)`` callable that
returns ``(rc, stdout, stderr)`` (``run_command`` of the AnsibleModule or of the agent's Task, a fake in the tests).
"""

from __future__ import annotations

import json
import os
import re
import tarfile

SOURCES = ("load", "pull", "build", "local")
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
# Release ids become directory names (same rule as the ledger's).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class ComposeError(Exception):
    pass


def check_image_id(value, what):
    if not isinstance(value, str) or not IMAGE_ID.match(value):
        raise ComposeError(f"{what} is not an image ID (sha256:<64 hex digits>): {value!r}")
    return value


def archive_image_id(path):
    """(image ID, repo tags) of the one image in a ``docker save`` archive (tar, or tar.gz/bz2/xz).

    The ID is the digest of the image's config blob, named in the archive's manifest.json both by the
    Docker format (``<hex>.json``) and by the OCI layout Docker 25+ writes (``blobs/sha256/<hex>``).
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            try:
                member = tar.getmember("manifest.json")
            except KeyError:
                raise ComposeError(f"{path} is not a docker save archive (no manifest.json)") from None
            handle = tar.extractfile(member)
            manifest = json.load(handle) if handle else None
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise ComposeError(f"cannot read the image archive {path}: {exc}") from exc
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no"
        raise ComposeError(f"{path} holds {count} images: ship exactly one image per archive")
    config = str(manifest[0].get("Config", ""))
    digest = os.path.basename(config)
    if digest.endswith(".json"):
        digest = digest[: -len(".json")]
    image_id = check_image_id(f"sha256:{digest}", f"the config of the image in {path}")
    return image_id, list(manifest[0].get("RepoTags") or [])


class DockerCli:
    """The few Docker CLI calls the modules need, each failing with what was attempted and why."""

    def __init__(self, run, docker="docker"):
        self._run_argv = run
        self.docker = docker

    def run(self, args, what):
        rc, out, err = self._run_argv([self.docker, *args])
        if rc != 0:
            reason = (err or out or "").strip() or f"exit code {rc}"
            raise ComposeError(f"{what}: {reason[-2000:]}")
        return out

    def engine_version(self):
        return self.run(["version", "--format", "{{.Server.Version}}"], "asking the Docker engine its version").strip()

    def image(self, ref):
        """{"id", "tags", "digests"} of an image on the engine, or None when it is not there."""
        rc, out, err = self._run_argv([self.docker, "image", "inspect", "--format", "{{json .}}", ref])
        if rc != 0:
            if "no such image" in (err or "").lower() or "no such object" in (err or "").lower():
                return None
            raise ComposeError(f"inspecting the image {ref}: {(err or out).strip()}")
        data = json.loads(out.strip().splitlines()[0])
        return {"id": data["Id"], "tags": list(data.get("RepoTags") or []),
                "digests": list(data.get("RepoDigests") or [])}

    def load(self, archive):
        return self.run(["load", "--input", archive], f"loading the image archive {archive}")

    def pull(self, ref):
        return self.run(["pull", "--quiet", ref], f"pulling the image {ref}")

    def build(self, ref, context, dockerfile=None, build_args=None):
        argv = ["build", "--quiet", "--tag", ref]
        if dockerfile:
            argv += ["--file", dockerfile]
        for key, value in sorted((build_args or {}).items()):
            argv += ["--build-arg", f"{key}={value}"]
        return self.run(argv + [context], f"building the image {ref} from {context}")

    def containers_using(self, image_id):
        out = self.run(["ps", "--all", "--quiet", "--no-trunc", "--filter", f"ancestor={image_id}"],
                       f"listing the containers that use {image_id}")
        return out.split()

    def remove_image(self, info):
        """Remove an image: all its tags (the last one deletes it), or its ID when it has none."""
        targets = info["tags"] or [info["id"]]
        return self.run(["image", "rm", *targets], f"removing the image {info['id']}")


def _spec_problem(service, spec):
    source = spec.get("source")
    if source not in SOURCES:
        return f"source must be one of {', '.join(SOURCES)}, got {source!r}"
    if source == "load" and not spec.get("archive"):
        return "source load needs an archive"
    if source in ("pull", "build", "local") and not spec.get("ref"):
        return f"source {source} needs a ref (an image name with a tag)"
    if source == "build" and not spec.get("context"):
        return "source build needs a context directory"
    if spec.get("id"):
        check_image_id(spec["id"], f"the expected image ID of service {service}")
    return None


def ensure_images(cli, specs, check_mode=False):
    """Make every service's image present on the engine and return what it is pinned to.

    Returns {"images": {service: id or None}, "actions": {service: action}, "changed": bool}; an ID is None
    only in check mode, for an image that a pull or a build would produce.
    """
    for service, spec in sorted(specs.items()):
        problem = _spec_problem(service, spec)
        if problem:
            raise ComposeError(f"the image of service {service}: {problem}")
    images, actions = {}, {}
    for service, spec in sorted(specs.items()):
        images[service], actions[service] = _ensure_one(cli, service, spec, check_mode)
    changed = any(action in ("loaded", "pulled", "built") for action in actions.values())
    return {"images": images, "actions": actions, "changed": changed}


def _ensure_one(cli, service, spec, check_mode):
    source = spec["source"]
    if source == "load":
        return _ensure_loaded(cli, service, spec, check_mode)
    ref = spec["ref"]
    before = cli.image(ref)
    if source == "local":
        if before is None:
            raise ComposeError(f"the image of service {service}, {ref}, is not on the Docker host (source local)")
        return before["id"], "present"
    if check_mode:
        # A pull may or may not bring a newer image; a build always runs.
        if source == "pull":
            return (before["id"], "present") if before else (None, "pulled")
        return (before["id"] if before else None), "built"
    if source == "pull":
        cli.pull(ref)
    else:
        cli.build(ref, spec["context"], spec.get("dockerfile"), spec.get("build_args"))
    after = cli.image(ref)
    if after is None:
        raise ComposeError(f"the image of service {service}, {ref}, is not on the Docker host after the {source}")
    unchanged = before is not None and before["id"] == after["id"]
    return after["id"], ("present" if unchanged else ("pulled" if source == "pull" else "built"))


def _ensure_loaded(cli, service, spec, check_mode):
    expected = spec.get("id")
    if expected and cli.image(expected):
        return expected, "present"
    archive = spec["archive"]
    if not os.path.exists(archive):
        if check_mode and expected:
            return expected, "loaded"
        raise ComposeError(f"the image archive of service {service} is not on the host: {archive}")
    image_id, _tags = archive_image_id(archive)
    if expected and image_id != expected:
        raise ComposeError(f"the image archive of service {service}, {archive}, holds {image_id}, not {expected}")
    if cli.image(image_id):
        return image_id, "present"
    if not check_mode:
        cli.load(archive)
        if cli.image(image_id) is None:
            raise ComposeError(f"loading {archive} did not make {image_id} present on the Docker host")
    return image_id, "loaded"


def read_release_images(path):
    """{service: image id} from a release's images file; {} when it is missing or not a mapping of IDs."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str) and IMAGE_ID.match(v)}


def prune_plan(releases, keep, protect=(), foreign_ids=()):
    """Which releases to keep and which images only the others use.

    releases: {release_id: {service: image id}}; ids sort by time (the deploy makes them from a UTC
    timestamp). Kept: the newest ``keep`` releases plus every ``protect`` one that exists. Candidates for
    removal: images of the other releases that no kept release, nor ``foreign_ids`` (other apps), uses.
    """
    if keep < 1:
        raise ComposeError(f"keep must be at least 1, got {keep}")
    names = sorted(releases)
    kept = set(names[-keep:]) | (set(protect) & set(names))
    remove = [name for name in names if name not in kept]
    kept_images = set()
    for name in kept:
        kept_images.update(releases[name].values())
    candidates = set()
    for name in remove:
        candidates.update(releases[name].values())
    return {"keep": sorted(kept), "remove": remove,
            "images": sorted(candidates - kept_images - set(foreign_ids)), "kept_images": sorted(kept_images)}
