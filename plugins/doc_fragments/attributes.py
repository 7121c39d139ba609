# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # What each attribute means; modules state their support level for each.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode).
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    # The options every ledger module shares.
    LEDGER = r"""
options:
  app:
    description: Name of the application; its ledger lives in a directory of that name.
    type: str
    required: true
  ledger_dir:
    description: Directory holding one sub-directory per application.
    type: path
    default: /var/lib/shipit
"""

    # The options of the modules that manage an application's releases directory (module_utils/_release.py).
    RELEASES = r"""
options:
  app_dir:
    description: Directory of the application; its releases are in C(releases/), C(current) links to the live one.
    type: path
    required: true
  host_label:
    description: Name of the host in messages (the inventory name); defaults to the host's own name.
    type: str
  check_mode_staged:
    description:
      - In check mode, with O(state=live), the release is missing because an earlier check-mode call with
        O(state=present) only reported that it would stage it. Report the switch instead of refusing it.
      - Has no effect outside check mode.
    type: bool
    default: false
"""
