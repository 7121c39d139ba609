"""`ansible-galaxy collection build` makes a clean tarball: collection content only."""

import json
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


def test_every_role_entry_point_is_documented_by_ansible_doc():
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    assert len(roles) == len(list((REPO / "roles").iterdir())), "a role without meta/argument_specs.yml"
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "role", "--json",
                           *(f"shipit.deploy.{role}" for role in roles)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == [f"shipit.deploy.{role}" for role in roles]
    for name, doc in docs.items():
        for entry, spec in doc["entry_points"].items():
            assert spec.get("short_description") and spec.get("description"), (name, entry)
