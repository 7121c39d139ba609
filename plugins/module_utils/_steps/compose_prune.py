# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.compose_prune: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

import glob
import os
import shutil

from ansible_collections.shipit.deploy.plugins.module_utils import _compose, _ledger

SPEC = dict(
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


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
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
