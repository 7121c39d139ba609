# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's part of staging a release: the tarball goes to the host before systemd_release unpacks it.

Private to shipit.deploy (used by the systemd_release and agent action plugins).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail, AnsibleError


def send_artifact(action, artifact):
    """Copy the release tarball artifact (found like a file of the task) into the connection's temporary
    directory on the host; returns its path there. AnsibleActionFail when the controller does not have it."""
    try:
        source = action._find_needle("files", artifact)
    except AnsibleError as error:
        raise AnsibleActionFail(f"the release artifact {artifact} is not on the controller: {error}") from None
    remote_tmp = action._connection._shell.tmpdir or action._make_tmp_path()
    path = action._connection._shell.join_path(remote_tmp, "release.tar")
    action._transfer_file(source, path)
    action._fixup_perms2((remote_tmp, path))
    return path
