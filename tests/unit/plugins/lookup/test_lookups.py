"""The collection's lookups, run in-process (they read files on the controller)."""

import hashlib
import importlib

import pytest
from ansible.errors import AnsibleLookupError

from compose_testlib import image_id, make_archive


def lookup(name, *terms):
    plugin = importlib.import_module(f"ansible_collections.shipit.deploy.plugins.lookup.{name}")
    return plugin.LookupModule().run(list(terms), variables={})


def test_artifact_size_and_checksum(tmp_path):
    artifact = tmp_path / "pulse-1.1.0.tar.gz"
    artifact.write_bytes(b"release" * 300000)  # more than one read chunk
    [found] = lookup("artifact", str(artifact))
    assert found == {"path": str(artifact), "exists": True, "size": 2100000,
                     "checksum": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    [missing] = lookup("artifact", str(tmp_path / "nope.tar.gz"))
    assert missing["exists"] is False and missing["checksum"] == "" and missing["size"] == 0


@pytest.mark.parametrize("oci", [False, True])
def test_image_archive_id_and_tags(tmp_path, oci):
    archive = tmp_path / "pulse.image.tar"
    make_archive(archive, "pulse", tags=["pulse:1.1.0"], oci=oci)
    assert lookup("image_archive", str(archive)) == [{"path": str(archive), "id": image_id("pulse"),
                                                      "tags": ["pulse:1.1.0"]}]


def test_image_archive_with_two_images_is_refused(tmp_path):
    archive = tmp_path / "two.image.tar"
    make_archive(archive, "pulse", images=2)
    with pytest.raises(AnsibleLookupError, match="holds 2 images: ship exactly one image per archive"):
        lookup("image_archive", str(archive))
