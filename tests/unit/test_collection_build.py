"""`ansible-galaxy collection build` makes a clean tarball: collection content only."""

import subprocess
import sys
import tarfile
from pathlib import Path

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
    assert {"MANIFEST.json", "FILES.json", "README.md", "meta", "playbooks", "plugins", "roles"} <= tops
    assert not tops & {"lab", "examples", "inventories", "molecule", "tests", "scripts", "collections",
                       ".venv", ".lab", ".git", "bench", ".ci", "requirements-dev.txt", "ansible.cfg"}, tops
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "plugins/modules/health_check.py" in names
    assert "roles/systemd_service/meta/argument_specs.yml" in names
