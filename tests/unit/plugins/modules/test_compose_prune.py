"""compose_prune runs as a real collection module against a fake Docker CLI and a real releases tree."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compose_testlib import fake_docker_cli, image_id, run_module  # noqa: E402


@pytest.fixture()
def stack(tmp_path):
    """/srv-like root with pulse releases r1..r5 (each its own app image, one shared db image) and another app."""
    cli, fake = fake_docker_cli(tmp_path)
    root = tmp_path / "srv"
    db = fake.add_image("db", tags=["postgres:15"])
    for n in range(1, 6):
        release = root / "pulse" / "releases" / f"2026112{n}T000000Z"
        release.mkdir(parents=True)
        app = fake.add_image(f"pulse-{n}", tags=[f"pulse:1.{n}.0"])
        (release / "images.json").write_text(json.dumps({"pulse": app, "db": db}))
    other = root / "shop" / "releases" / "20261101T000000Z"
    other.mkdir(parents=True)
    (other / "images.json").write_text(json.dumps({"web": image_id("pulse-2")}))  # another app shares pulse-2's image
    return cli, fake, root


def releases(root):
    return sorted(p.name for p in (root / "pulse" / "releases").iterdir())


def test_check_then_prune_then_nothing_left_to_prune(stack):
    cli, fake, root = stack
    args = {"docker_cli": cli, "root": str(root), "app": "pulse", "keep": 2, "protect": ["20261121T000000Z"]}
    predicted = run_module("compose_prune", args, check=True)
    assert predicted["changed"]
    assert predicted["removed_releases"] == ["20261122T000000Z", "20261123T000000Z"]
    assert predicted["removed_images"] == [image_id("pulse-3")]  # pulse-2 is another app's too
    assert predicted["diff"]["after"]["releases"] == ["20261121T000000Z", "20261124T000000Z", "20261125T000000Z"]
    assert len(releases(root)) == 5 and not fake.calls(["image", "rm"])
    done = run_module("compose_prune", args)
    assert done["removed_releases"] == predicted["removed_releases"]
    assert releases(root) == ["20261121T000000Z", "20261124T000000Z", "20261125T000000Z"]
    left = set(fake.load_state()["images"])
    assert left == {image_id(f"pulse-{n}") for n in (1, 2, 4, 5)} | {image_id("db")}
    assert fake.calls(["image", "rm"]) == [["image", "rm", "pulse:1.3.0"]]
    for check in (True, False):
        again = run_module("compose_prune", args, check=check)
        assert not again["changed"] and again["removed_releases"] == [] and again["removed_images"] == []


def test_an_image_a_container_uses_is_kept_with_its_release(stack):
    cli, fake, root = stack
    fake.add_container("c0ffee", image_id("pulse-1"))
    result = run_module("compose_prune", {"docker_cli": cli, "root": str(root), "app": "pulse", "keep": 3})
    assert result["in_use"] == [image_id("pulse-1")]
    assert "20261121T000000Z" not in result["removed_releases"]
    assert releases(root) == ["20261121T000000Z", "20261123T000000Z", "20261124T000000Z", "20261125T000000Z"]
    assert image_id("pulse-1") in fake.load_state()["images"]
    assert any("a container still uses" in warning for warning in result.get("warnings", []))


@pytest.mark.parametrize("args, message", [
    ({"app": "../etc", "keep": 3}, "is not a safe application name"),
    ({"app": "pulse", "keep": 0}, "keep must be at least 1"),
    ({"app": "pulse", "keep": 3, "images_file": "../x"}, "images_file must be a file name"),
])
def test_bad_arguments_fail_with_what_was_attempted(stack, args, message):
    cli, _fake, root = stack
    result = run_module("compose_prune", {"docker_cli": cli, "root": str(root), **args})
    assert result["failed"] and result["msg"].startswith("pruning the releases of") and message in result["msg"]
    assert len(releases(root)) == 5


def test_removed_releases_are_recorded_pruned_in_the_ledger(stack, tmp_path):
    cli, _fake, root = stack
    ids = releases(root)
    ledger = tmp_path / "ledgers" / "pulse" / "ledger.json"
    ledger.parent.mkdir(parents=True)
    entries = [{"release_id": r, "version": f"1.{n}.0", "status": "good"} for n, r in enumerate(ids, 1)]
    entries[-1]["status"] = "live"
    entries[1]["status"], entries[1]["reason"] = "failed", "pulse is unhealthy"
    ledger.write_text(json.dumps({"ledger_version": 1, "app": "pulse", "releases": entries}))
    args = {"docker_cli": cli, "root": str(root), "app": "pulse", "keep": 2, "protect": [ids[0]],
            "ledger_dir": str(tmp_path / "ledgers")}
    predicted = run_module("compose_prune", args, check=True)
    assert predicted["pruned_in_ledger"] == [ids[1], ids[2]], predicted
    assert json.loads(ledger.read_text())["releases"] == entries
    done = run_module("compose_prune", args)
    assert done["removed_releases"] == done["pruned_in_ledger"] == [ids[1], ids[2]], done
    after = json.loads(ledger.read_text())["releases"]
    assert [e["status"] for e in after] == ["good", "pruned", "pruned", "good", "live"]
    assert (after[1]["pruned_from"], after[1]["reason"], after[1]["version"]) == ("failed", "pulse is unhealthy", "1.2.0")
    again = run_module("compose_prune", args)
    assert not again["changed"] and again["pruned_in_ledger"] == []
    without = run_module("compose_prune", dict(args, ledger_dir=None, keep=1, protect=[]), check=True)
    assert without["removed_releases"] and without["pruned_in_ledger"] == []
