"""pulse: the small sample web app that shipit.deploy deploys in its tests and demos (stdlib only)."""

import re

try:
    # Written by build.py into every release; absent in the source tree.
    from ._build import BROKEN, VERSION
except ImportError:
    VERSION = "dev"
    BROKEN = False

__version__ = VERSION

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")


def parse_version(version):
    """(major, minor, patch) of "1.2.3" or "1.2.3-rc1"; None for a non-release string such as "dev"."""
    match = _VERSION_RE.match(version)
    return tuple(int(part) for part in match.groups()) if match else None
