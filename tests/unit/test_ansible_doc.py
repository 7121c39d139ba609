"""`ansible-doc` renders every plugin and role of the collection: what a user reads must parse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"

# Plugin type -> the files that name its plugins (a filter's documentation is its own .yml file).
PLUGINS = {
    "module": sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py")),
    "lookup": sorted(p.stem for p in (REPO / "plugins" / "lookup").glob("*.py")),
    "filter": sorted(p.stem for p in (REPO / "plugins" / "filter").glob("*.yml")),
}


def ansible_doc(*args):
    # Only this checkout (collections/ansible_collections/shipit/deploy links to it), never another copy.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(ANSIBLE_DOC), *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO, env=env)


@pytest.mark.parametrize("plugin_type", sorted(PLUGINS))
def test_every_plugin_is_listed_and_its_documentation_renders(plugin_type):
    names = [f"shipit.deploy.{name}" for name in PLUGINS[plugin_type]]
    assert names
    listed = ansible_doc("-t", plugin_type, "-l", "shipit.deploy", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(listed.stdout)) == names

    proc = ansible_doc("-t", plugin_type, "--json", *names)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == names
    for name, doc in docs.items():
        assert doc["doc"].get("short_description") and doc["doc"].get("description"), name
        assert doc.get("examples"), name
        if plugin_type == "module":
            assert doc["doc"].get("attributes", {}).get("check_mode"), name
        assert doc.get("return") is not None, name


def test_every_role_entry_point_is_documented():
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    assert len(roles) == len(list((REPO / "roles").iterdir())), "a role without meta/argument_specs.yml"
    proc = ansible_doc("-t", "role", "--json", *(f"shipit.deploy.{role}" for role in roles))
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(docs) == [f"shipit.deploy.{role}" for role in roles]
    for name, doc in docs.items():
        for entry, spec in doc["entry_points"].items():
            assert spec.get("short_description") and spec.get("description"), (name, entry)
