"""Images of Compose releases: archive IDs, making images present and pinning them, prune plans."""

import json
import sys
from pathlib import Path

import pytest

from ansible_collections.shipit.deploy.plugins.module_utils import _compose

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compose_testlib import FakeDocker, image_id, make_archive  # noqa: E402


@pytest.fixture()
def docker(tmp_path):
    fake = FakeDocker(tmp_path / "state.json")
    return fake, _compose.DockerCli(fake.run)


@pytest.mark.parametrize("oci", [False, True], ids=["docker-format", "oci-layout"])
@pytest.mark.parametrize("gz", [False, True], ids=["tar", "tar.gz"])
def test_archive_image_id_reads_the_config_digest(tmp_path, oci, gz):
    archive = make_archive(tmp_path / "pulse.tar", "pulse-1.0.0", tags=["pulse:1.0.0"], oci=oci, gz=gz)
    assert _compose.archive_image_id(archive) == (image_id("pulse-1.0.0"), ["pulse:1.0.0"])


def test_archive_with_two_images_is_refused(tmp_path):
    archive = make_archive(tmp_path / "two.tar", "a", images=2)
    with pytest.raises(_compose.ComposeError, match="holds 2 images: ship exactly one image per archive"):
        _compose.archive_image_id(archive)


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    (tmp_path / "x.tar").write_text("not a tar")
    with pytest.raises(_compose.ComposeError, match="cannot read the image archive"):
        _compose.archive_image_id(tmp_path / "x.tar")
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(_compose.ComposeError):
        _compose.archive_image_id(tmp_path / "empty.tar")


def test_load_ships_an_absent_image_and_pins_its_id(tmp_path, docker):
    fake, cli = docker
    archive = make_archive(tmp_path / "pulse.tar", "pulse-1.1.0", tags=["pulse:1.1.0"])
    result = _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": str(archive)}})
    assert result == {"images": {"pulse": image_id("pulse-1.1.0")}, "actions": {"pulse": "loaded"}, "changed": True}
    assert len(fake.calls(["load"])) == 1
    again = _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": str(archive)}})
    assert again["actions"] == {"pulse": "present"} and not again["changed"]
    assert len(fake.calls(["load"])) == 1


def test_load_with_the_expected_id_present_needs_no_archive(docker):
    fake, cli = docker
    iid = fake.add_image("postgres-15")
    result = _compose.ensure_images(cli, {"db": {"source": "load", "archive": "/nowhere.tar", "id": iid}})
    assert result["images"] == {"db": iid} and not result["changed"]


def test_load_refuses_an_archive_that_holds_another_image(tmp_path, docker):
    _fake, cli = docker
    archive = make_archive(tmp_path / "pulse.tar", "pulse-1.1.0")
    with pytest.raises(_compose.ComposeError, match="holds sha256:.*, not sha256:"):
        _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": str(archive), "id": image_id("other")}})


def test_load_of_a_missing_archive_fails_clearly(docker):
    _fake, cli = docker
    with pytest.raises(_compose.ComposeError, match="the image archive of service pulse is not on the host: /gone.tar"):
        _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": "/gone.tar"}})


def test_check_mode_predicts_a_load_and_loads_nothing(tmp_path, docker):
    fake, cli = docker
    archive = make_archive(tmp_path / "pulse.tar", "pulse-1.1.0")
    result = _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": str(archive)}}, check_mode=True)
    assert result["changed"] and result["images"] == {"pulse": image_id("pulse-1.1.0")}
    assert not fake.calls(["load"]) and fake.load_state()["images"] == {}
    # The archive is not on the host yet in check mode: the ID read on the controller stands in.
    expected = image_id("pulse-1.2.0")
    result = _compose.ensure_images(cli, {"pulse": {"source": "load", "archive": "/x.tar", "id": expected}}, check_mode=True)
    assert result["images"] == {"pulse": expected} and result["actions"] == {"pulse": "loaded"}


def test_pull_pins_what_the_tag_points_to_now(docker):
    fake, cli = docker
    state = fake.load_state()
    state["registry"]["redis:7"] = image_id("redis-7.2.4")
    fake.save(state)
    result = _compose.ensure_images(cli, {"cache": {"source": "pull", "ref": "redis:7"}})
    assert result["images"] == {"cache": image_id("redis-7.2.4")} and result["actions"] == {"cache": "pulled"}
    again = _compose.ensure_images(cli, {"cache": {"source": "pull", "ref": "redis:7"}})
    assert again["actions"] == {"cache": "present"} and not again["changed"]


def test_pull_failure_says_what_and_why(docker):
    _fake, cli = docker
    with pytest.raises(_compose.ComposeError, match="pulling the image nope:1: .*manifest for nope:1 not found"):
        _compose.ensure_images(cli, {"x": {"source": "pull", "ref": "nope:1"}})


def test_build_tags_and_pins_the_built_image(docker):
    fake, cli = docker
    spec = {"source": "build", "ref": "shop:2", "context": "/srv/shop/src", "dockerfile": "Dockerfile.prod",
            "build_args": {"B": "2", "A": "1"}}
    result = _compose.ensure_images(cli, {"web": spec})
    assert result["actions"] == {"web": "built"} and result["images"]["web"].startswith("sha256:")
    [call] = fake.calls(["build"])
    assert call == ["build", "--quiet", "--tag", "shop:2", "--file", "Dockerfile.prod", "--build-arg", "A=1",
                    "--build-arg", "B=2", "/srv/shop/src"]


def test_local_image_must_be_there(docker):
    fake, cli = docker
    fake.add_image("app", tags=["app:3"])
    assert _compose.ensure_images(cli, {"app": {"source": "local", "ref": "app:3"}})["images"] == {"app": image_id("app")}
    with pytest.raises(_compose.ComposeError, match="the image of service app, app:4, is not on the Docker host"):
        _compose.ensure_images(cli, {"app": {"source": "local", "ref": "app:4"}})


@pytest.mark.parametrize("spec, message", [
    ({"source": "fetch"}, "source must be one of load, pull, build, local"),
    ({"source": "load"}, "source load needs an archive"),
    ({"source": "pull"}, "source pull needs a ref"),
    ({"source": "build", "ref": "x:1"}, "source build needs a context directory"),
    ({"source": "load", "archive": "/a.tar", "id": "latest"}, "is not an image ID"),
])
def test_bad_specs_are_refused_before_anything_runs(docker, spec, message):
    fake, cli = docker
    with pytest.raises(_compose.ComposeError, match=message):
        _compose.ensure_images(cli, {"svc": spec, "ok": {"source": "local", "ref": "y:1"}})
    assert not fake.calls(["image", "inspect"])


def test_remove_image_untags_every_tag_or_removes_the_id(docker):
    fake, cli = docker
    tagged = fake.add_image("a", tags=["a:1", "a:latest"])
    dangling = fake.add_image("b")
    cli.remove_image(cli.image(tagged))
    cli.remove_image(cli.image(dangling))
    assert fake.load_state()["images"] == {}
    assert fake.calls(["image", "rm"]) == [["image", "rm", "a:1", "a:latest"], ["image", "rm", dangling]]


def test_read_release_images_ignores_what_is_not_an_id(tmp_path):
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"pulse": image_id("p"), "bad": "pulse:1.0.0", "n": 3}))
    assert _compose.read_release_images(path) == {"pulse": image_id("p")}
    assert _compose.read_release_images(tmp_path / "missing.json") == {}
    path.write_text("[1, 2]")
    assert _compose.read_release_images(path) == {}


def test_prune_plan_keeps_the_newest_and_the_protected_releases():
    db = image_id("db")
    releases = {f"r{n}": {"app": image_id(f"app-{n}"), "db": db} for n in range(1, 6)}
    plan = _compose.prune_plan(releases, keep=2, protect=["r1", "r9"])
    assert plan["keep"] == ["r1", "r4", "r5"]
    assert plan["remove"] == ["r2", "r3"]
    # By reference: db is shared with kept releases and stays; app-2 and app-3 go.
    assert plan["images"] == sorted([image_id("app-2"), image_id("app-3")])
    assert db in plan["kept_images"]


def test_prune_plan_never_removes_an_image_another_release_or_app_uses():
    shared = image_id("shared")
    releases = {"r1": {"app": shared}, "r2": {"app": image_id("old")}, "r3": {"app": shared}}
    plan = _compose.prune_plan(releases, keep=1, foreign_ids=[image_id("old")])
    assert plan["remove"] == ["r1", "r2"]
    assert plan["images"] == []


def test_prune_plan_refuses_to_keep_nothing():
    with pytest.raises(_compose.ComposeError, match="keep must be at least 1"):
        _compose.prune_plan({"r1": {}}, keep=0)
