"""What ships: `ansible-galaxy collection build` makes a tarball of the collection only, at the version
the changelog fragments go into. (That its documentation renders: test_ansible_doc.py.)"""

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_collection_tarball_holds_only_collection_content(tmp_path):
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    proc = subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [tarball] = tmp_path.glob("shipit-deploy-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"MANIFEST.json", "FILES.json", "README.md", "changelogs", "docs", "meta", "playbooks",
                    "plugins", "roles"}, tops
    assert not [n for n in names if n.endswith((".whl", ".ini", ".tar.gz"))]
    assert [n for n in names if n.startswith("docs/")] and "docs/report-schema.json" not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "plugins/modules/health_check.py" in names
    assert "roles/systemd_service/meta/argument_specs.yml" in names


def _version(text):
    return tuple(int(part) for part in text.split("."))


def test_galaxy_version_is_the_release_the_changelog_fragments_go_into():
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    fragments = [p.name for p in (REPO / "changelogs" / "fragments").glob("*.yml")]
    prefixes = {re.match(r"^(\d+\.\d+\.\d+)-", name)[1] for name in fragments}
    assert prefixes and max(prefixes, key=_version) == version, (version, sorted(prefixes))
    # Nothing in the collection claims to be newer than the release it ships in.
    added = re.findall(r"version_added:\s*['\"]?(\d+\.\d+\.\d+)", "\n".join(
        p.read_text() for p in (REPO / "plugins").rglob("*") if p.suffix in (".py", ".yml")))
    assert added and all(_version(a) <= _version(version) for a in added), (version, sorted(set(added)))
