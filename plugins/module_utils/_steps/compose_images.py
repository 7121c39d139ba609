# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.compose_images: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

from ansible_collections.shipit.deploy.plugins.module_utils import _compose

IMAGE_SPEC = dict(
    service=dict(type="str", required=True),
    source=dict(type="str", required=True, choices=list(_compose.SOURCES)),
    ref=dict(type="str"),
    archive=dict(type="path"),
    id=dict(type="str"),
    context=dict(type="path"),
    dockerfile=dict(type="str"),
    build_args=dict(type="dict"),
)

SPEC = dict(
    argument_spec=dict(
        images=dict(type="list", elements="dict", required=True, options=IMAGE_SPEC),
        docker_cli=dict(type="path", default="docker"),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    specs = {}
    for spec in module.params["images"]:
        if spec["service"] in specs:
            module.fail_json(msg=f"making the images present: service {spec['service']} is listed twice")
        specs[spec["service"]] = {key: value for key, value in spec.items() if key != "service"}
    cli = _compose.DockerCli(module.run_command, module.params["docker_cli"])
    try:
        engine_version = cli.engine_version()
        result = _compose.ensure_images(cli, specs, module.check_mode)
    except _compose.ComposeError as exc:
        module.fail_json(msg=f"making the images of {', '.join(sorted(specs))} present: {exc}")
    module.exit_json(changed=result["changed"], images=result["images"], actions=result["actions"],
                     engine_version=engine_version)
