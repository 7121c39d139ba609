# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The body of module shipit.deploy.release_ledger: run by the module (AnsibleModule) and by the host agent (a _task.Task)."""

from __future__ import annotations

from ansible_collections.shipit.deploy.plugins.module_utils import _ledger


SPEC = dict(
    argument_spec=dict(
        app=dict(type="str", required=True),
        ledger_dir=dict(type="path", default="/var/lib/shipit"),
        release_id=dict(type="str", required=True),
        status=dict(type="str", required=True, choices=list(_ledger.STATUSES)),
        previous_status=dict(type="str", default="good", choices=["good", "rolled_back", "failed"]),
        version=dict(type="str"),
        checksum=dict(type="str"),
        reason=dict(type="str"),
        info=dict(type="dict"),
        keep_failed=dict(type="int", default=_ledger.KEEP_FAILED),
        keep_pruned=dict(type="int", default=_ledger.KEEP_PRUNED),
    ),
    supports_check_mode=True,
)


def run(module):
    """The module's work: ends with module.exit_json or module.fail_json."""
    params = module.params
    try:
        path = _ledger.ledger_path(params["ledger_dir"], params["app"])
        data = _ledger.load(path, params["app"])
        fields = {"version": params["version"], "checksum": params["checksum"], "reason": params["reason"]}
        if params["info"]:
            fields.update(params["info"])
        new, changed, before, after = _ledger.record(
            data, params["release_id"], params["status"], fields, params["previous_status"],
            keep_failed=params["keep_failed"], keep_pruned=params["keep_pruned"],
        )
        if changed and not module.check_mode:
            _ledger.save(path, new)
    except (_ledger.LedgerError, OSError) as exc:
        module.fail_json(msg=f"recording release {params['release_id']} of {params['app']} as {params['status']}: {exc}")
    module.exit_json(
        changed=changed,
        release=after,
        live=_ledger.live(new),
        dropped=sorted({e.get("release_id") for e in data["releases"]}
                       - {e.get("release_id") for e in new["releases"]}),
        path=path,
        diff={"before": before or {}, "after": after},
    )
