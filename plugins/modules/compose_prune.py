#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_prune
short_description: Remove old Compose releases and the images no kept release uses
version_added: 0.2.0
description:
  - Keeps the newest O(keep) release directories of an application under C(<root>/<app>/releases/) plus every
    release in O(protect) (the live release and the rollback target), and removes the others.
  - Each release directory holds C(images.json), the image IDs that release pins. An image is removed only when
    no kept release of this application and no release of another application under O(root) references it;
    images are pruned by reference, never by age.
  - An image a container still uses (running or stopped) is never removed; the release that references it is
    kept too, so a later run tries again, and the image is reported in RV(in_use).
  - An image is removed by its tags (removing the last tag deletes it), or by its ID when it has none.
  - With O(ledger_dir), the releases removed are recorded C(pruned) in the application's release ledger in the
    same call, so no rollback picks a release whose files are gone; releases the ledger has as C(good) or
    C(rolled_back) whose directory is missing are recorded C(pruned) too.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  root:
    description: Parent directory of the application directories.
    type: path
    required: true
  app:
    description: Name of the application (its directory under O(root)).
    type: str
    required: true
  keep:
    description: Number of newest releases to keep (at least 1); protected releases are kept besides.
    type: int
    required: true
  protect:
    description: Release ids that are never removed, whatever their age.
    type: list
    elements: str
    default: []
  images_file:
    description: Name of the file, in each release directory, that maps services to image IDs.
    type: str
    default: images.json
  docker_cli:
    description: Docker CLI to run.
    type: path
    default: docker
  ledger_dir:
    description:
      - Directory holding the release ledgers (one sub-directory per application, as for
        M(shipit.deploy.release_ledger)). The ledger of O(app) there records the releases removed as C(pruned).
      - When it is not given the ledger is not touched.
    type: path
"""

EXAMPLES = r"""
- name: Keep the newest three releases of pulse and the images they use
  shipit.deploy.compose_prune:
    root: /srv
    app: pulse
    keep: 3
    protect:
      - "20261125T180000Z"  # live
      - "20261125T170000Z"  # rollback target
    ledger_dir: /var/lib/shipit
"""

RETURN = r"""
removed_releases:
  description: Release directories removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: ["20261120T090000Z"]
kept_releases:
  description: Release directories kept.
  returned: success
  type: list
  elements: str
  sample: ["20261125T170000Z", "20261125T180000Z"]
removed_images:
  description: Image IDs removed (or that would be, in check mode).
  returned: success
  type: list
  elements: str
kept_images:
  description: Image IDs the kept releases use.
  returned: success
  type: list
  elements: str
in_use:
  description: Image IDs that would have been removed but a container uses; their releases were kept.
  returned: success
  type: list
  elements: str
pruned_in_ledger:
  description: Releases recorded C(pruned) in the ledger (or that would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: ["20261120T090000Z"]
"""

import glob
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils import _compose, _ledger


def read_releases(releases_dir, images_file):
    releases = {}
    if not os.path.isdir(releases_dir):
        return releases
    for name in os.listdir(releases_dir):
        path = os.path.join(releases_dir, name)
        if _compose.SAFE_NAME.match(name) and os.path.isdir(path) and not os.path.islink(path):
            releases[name] = _compose.read_release_images(os.path.join(path, images_file))
    return releases


def foreign_images(root, app, images_file):
    """Image IDs any release of another application under root pins."""
    ids = set()
    for path in glob.glob(os.path.join(glob.escape(root), "*", "releases", "*", images_file)):
        if os.path.relpath(path, root).split(os.sep)[0] != app:
            ids.update(_compose.read_release_images(path).values())
    return ids


def prune(module, cli, params):
    app_dir = os.path.join(params["root"], params["app"])
    releases_dir = os.path.join(app_dir, "releases")
    releases = read_releases(releases_dir, params["images_file"])
    plan = _compose.prune_plan(releases, params["keep"], params["protect"],
                               foreign_images(params["root"], params["app"], params["images_file"]))
    removed_images, in_use = [], []
    for image_id in plan["images"]:
        info = cli.image(image_id)
        if info is None:
            continue
        if cli.containers_using(image_id):
            in_use.append(image_id)
            continue
        if not module.check_mode:
            cli.remove_image(info)
        removed_images.append(image_id)
    removed_releases = [name for name in plan["remove"] if not set(releases[name].values()) & set(in_use)]
    if not module.check_mode:
        for name in removed_releases:
            shutil.rmtree(os.path.join(releases_dir, name))
    kept = sorted(set(releases) - set(removed_releases))
    pruned = []
    if params["ledger_dir"]:
        try:
            pruned = _ledger.record_pruned(params["ledger_dir"], params["app"], removed_releases, kept,
                                           module.check_mode)
        except _ledger.LedgerError as exc:
            raise _compose.ComposeError(f"the releases {', '.join(removed_releases) or '(none)'} were removed, but "
                                        f"recording them as pruned in the ledger failed: {exc}") from exc
    return {
        "changed": bool(removed_releases or removed_images or pruned),
        "removed_releases": removed_releases,
        "kept_releases": kept,
        "removed_images": removed_images,
        "kept_images": plan["kept_images"],
        "in_use": in_use,
        "pruned_in_ledger": pruned,
        "diff": {"before": {"releases": sorted(releases)}, "after": {"releases": kept}},
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            app=dict(type="str", required=True),
            keep=dict(type="int", required=True),
            protect=dict(type="list", elements="str", default=[]),
            images_file=dict(type="str", default="images.json"),
            docker_cli=dict(type="path", default="docker"),
            ledger_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    what = f"pruning the releases of {params['app']} (keeping {params['keep']})"
    if not _compose.SAFE_NAME.match(params["app"]) or ".." in params["app"]:
        module.fail_json(msg=f"{what}: {params['app']!r} is not a safe application name")
    if "/" in params["images_file"] or params["images_file"] in ("", ".", ".."):
        module.fail_json(msg=f"{what}: images_file must be a file name, got {params['images_file']!r}")
    cli = _compose.DockerCli(module.run_command, params["docker_cli"])
    try:
        result = prune(module, cli, params)
    except (_compose.ComposeError, OSError) as exc:
        module.fail_json(msg=f"{what}: {exc}")
    if result["in_use"]:
        module.warn(f"images a container still uses were not removed: {', '.join(result['in_use'])}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
