#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_release
short_description: Stage a release of a systemd service, or make a staged release live
version_added: 0.2.0
description:
  - The host side of the C(shipit.deploy.systemd_service) role. Each step of a deploy is one call of this
    module, so a deploy makes a few round trips to the host instead of one per file, user and directory.
  - O(state=present) stages the release. It creates the service group and user (system, no login shell) and
    the layout C(<app_dir>/{releases,shared,shared/config,shared/<dir>}). It writes the environment file
    (C(0640), root and the service group). It unpacks the release tarball into C(releases/<release_id>); the
    tarball is unpacked beside it and renamed into place, so a release directory is always whole. It links
    the shared directories into the release, and installs the unit once C(systemd-analyze verify) accepts it.
    On a first deploy (no C(current) yet) C(current) is pointed at the release, which the unit needs to verify.
  - O(state=live) makes a staged release live. C(current) is replaced by rename(2) of a prepared link, so
    readers see the old or the new release, never none. A previous start failure is cleared (a crash-looping
    release may have tripped the start limit), systemd reloads a changed unit, and the service is enabled and
    restarted; it is only started when nothing changed. Then releases beyond O(keep_releases) are removed and,
    with O(ledger_app), recorded C(pruned) in the release ledger in the same call.
  - With O(slot) the service runs in two slots (blue/green, for traffic switching behind
    M(shipit.deploy.front_proxy)). O(unit) is then a template unit (C(pulse@.service)) whose instance C(<slot>) runs the
    release C(slots/<slot>) links to, with the slot's environment file (its port) besides the app's.
    O(state=present) also links the slot to the release and writes its environment, O(state=started) (re)starts
    the slot on its release, O(state=live) points C(current) at it and enables it at boot (the other slot is
    disabled) without restarting anything, and O(state=stopped) stops the slot.
  - A release that is not on the host is refused before anything changes, with C(nothing was changed). A unit
    that does not verify is not installed, and nothing is made live.
  - With the action plugin, O(artifact) is a tarball on the controller, copied to the host only when it is
    needed.
author:
  - shipit.deploy maintainers (@shipit-deploy)
extends_documentation_fragment:
  - shipit.deploy.attributes
  - shipit.deploy.attributes.releases
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
    description: The action plugin copies O(artifact) from the controller.
options:
  state:
    description:
      - C(present) stages the release, C(migrated) runs its migration command (O(migrate_argv)), C(live) makes
        the staged release live.
      - With O(slot), C(started) (re)starts a slot on its release and C(stopped) stops a slot.
    type: str
    choices: [present, migrated, live, started, stopped]
    default: present
  slot:
    description:
      - The slot (C(blue) or C(green)) to stage the release in, start, make live or stop. O(unit) is then a template
        unit.
      - With O(state=started) and O(release_id), a slot that runs the release already is used instead (a rollback
        to a release that still runs is a switch, not a start).
    type: str
    choices: [blue, green]
  slot_env:
    description:
      - With O(slot) and O(state=present), the variables of the slot's environment file
        C(shared/config/slot-<slot>.env), read by the unit after O(env_file) (the slot's port, for example).
    type: dict
  release_id:
    description:
      - Name of the release's directory under C(releases/).
      - When it is not given the releases are left as they are. O(state=present) then keeps only the user, the
        layout, the environment and the unit in shape, and O(state=live) only the service (an idempotent re-run).
    type: str
  unit:
    description: Name of the systemd unit, for example C(pulse.service), or with O(slot) of the template unit, C(pulse@.service).
    type: str
    required: true
  artifact:
    description:
      - Release tarball on the controller (any compression C(tar) reads). The action plugin copies it to the
        host when O(state=present) and the release is not staged yet.
      - Give either O(artifact) or O(src); neither is needed when the release is already on the host.
    type: path
  src:
    description: Release tarball already on the host.
    type: path
  user:
    description: System user the service runs as. With O(state=present), created when it is missing.
    type: str
  group:
    description: Group of O(user). With O(state=present), created when it is missing.
    type: str
  shared_dirs:
    description: Directories under C(shared/) kept across releases, owned by O(user) and linked into each release.
    type: list
    elements: str
    default: []
  env_file:
    description: Path of the environment file of the service and its migrations.
    type: path
  env_content:
    description: Content of O(env_file). It is never printed.
    type: str
  unit_content:
    description: Content of the unit file, installed as C(/etc/systemd/system/<unit>) once it verifies.
    type: str
  migrate_argv:
    description:
      - With O(state=migrated), the migration command, its program relative to the release's directory (for
        example V(["bin/pulse", "migrate"])). It runs with C(systemd-run) as O(user) and O(group), with the
        environment of O(env_file), in the release's directory, and it must exit 0.
      - In check mode it is not run; the change it would make is reported.
    type: list
    elements: str
  restart:
    description:
      - With O(state=live), restart the service even when C(current) did not move (its unit or its
        environment changed).
    type: bool
    default: false
  keep_releases:
    description:
      - With O(state=live), how many release directories to keep (the newest by name, release ids sort by
        time). Nothing is removed when it is not given.
    type: int
  protected_releases:
    description: Releases never removed by O(keep_releases) (the rollback target); the live release is never removed.
    type: list
    elements: str
    default: []
  ledger_app:
    description:
      - Application whose release ledger records the releases O(keep_releases) removes, as C(pruned), so no
        rollback picks a release whose files are gone. Releases recorded C(good) or C(rolled_back) whose
        directory is missing are recorded C(pruned) too.
      - When it is not given the ledger is not touched.
    type: str
  ledger_dir:
    description: Directory holding the release ledgers (one sub-directory per application), with O(ledger_app).
    type: path
    default: /var/lib/shipit
notes:
  - Runs as root (it creates users, writes C(/etc/systemd/system) and restarts services).
  - Release ids must sort by time; C(shipit.deploy.deploy) makes them from a UTC timestamp.
seealso:
  - module: shipit.deploy.release_ledger
"""

EXAMPLES = r"""
- name: Stage the release and install its verified unit
  shipit.deploy.systemd_release:
    state: present
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
    unit: pulse.service
    artifact: dist/pulse-1.1.0.tar.gz
    user: pulse
    group: pulse
    shared_dirs: [data]
    env_file: /srv/pulse/shared/config/pulse.env
    env_content: "{{ lookup('ansible.builtin.template', 'env.j2') }}"
    unit_content: "{{ lookup('ansible.builtin.template', 'unit.service.j2') }}"
  register: staged

- name: Run its migrations as the service user, with the service's environment
  shipit.deploy.systemd_release:
    state: migrated
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
    unit: pulse.service
    user: pulse
    group: pulse
    env_file: /srv/pulse/shared/config/pulse.env
    migrate_argv: [bin/pulse, migrate]

- name: Switch to it and restart the service
  shipit.deploy.systemd_release:
    state: live
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
    unit: pulse.service
    restart: "{{ staged.unit_changed or staged.env_changed }}"
    keep_releases: 5
    protected_releases: ["20261124T090000Z"]
    ledger_app: pulse

- name: Start the release in the idle slot (traffic switching)
  shipit.deploy.systemd_release:
    state: started
    app_dir: /srv/pulse
    release_id: "20261125T101500Z"
    unit: pulse@.service
    slot: green
    restart: true
"""

RETURN = r"""
release_dir:
  description: Directory of the release.
  returned: when O(release_id) is given
  type: str
  sample: /srv/pulse/releases/20261125T101500Z
changes:
  description: What was changed (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["created user pulse", "unpacked the release", "installed pulse.service"]
unpacked:
  description: Whether the release was unpacked by this call.
  returned: when O(state=present)
  type: bool
env_changed:
  description: Whether the environment file was written.
  returned: when O(state=present)
  type: bool
unit_changed:
  description: Whether the unit file was installed.
  returned: when O(state=present)
  type: bool
migration_rc:
  description: Exit status of the migration command (null in check mode).
  returned: when O(state=migrated)
  type: int
  sample: 0
switched:
  description: Whether C(current) was moved to the release.
  returned: when O(state=live)
  type: bool
restarted:
  description: Whether the service (or the slot) was restarted or started.
  returned: when O(state=live) or O(state=started)
  type: bool
slot:
  description: The slot the release runs in.
  returned: with O(slot)
  type: str
  sample: green
slot_release:
  description: The release id the slot links to, or null.
  returned: with O(slot)
  type: str
stopped:
  description: Whether the slot was stopped.
  returned: when O(state=stopped)
  type: bool
removed_releases:
  description: Release directories removed by O(keep_releases).
  returned: when O(state=live)
  type: list
  elements: str
pruned_in_ledger:
  description: Releases recorded C(pruned) in the ledger of O(ledger_app) (or that would be, in check mode).
  returned: when O(state=live)
  type: list
  elements: str
  sample: ["20261120T090000Z"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.shipit.deploy.plugins.module_utils._steps import systemd_release as step


def main():
    step.run(AnsibleModule(**step.SPEC))


if __name__ == "__main__":
    main()
