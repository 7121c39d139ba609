"""A fake Docker CLI for the compose modules' tests, and `docker save` archives to feed it.

FakeDocker keeps the engine's images and containers in a JSON file and answers the handful of commands
the compose modules run, with the real CLI's exit codes and error texts where the modules read them.
`fake_docker_cli(tmp_path)` writes an executable wrapper so real module runs can use it (docker_cli);
`run_module` runs a collection module for real (ansible ad-hoc on localhost).
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def image_id(name):
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def make_archive(path, name, tags=(), oci=False, gz=False, images=1):
    """A docker save archive of `images` images whose first one has the ID image_id(name)."""
    raw = io.BytesIO()
    manifest = []
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for n in range(images):
            digest = image_id(name if n == 0 else f"{name}-{n}")[len("sha256:"):]
            config_name = f"blobs/sha256/{digest}" if oci else f"{digest}.json"
            _add(tar, config_name, json.dumps({"config": {}, "rootfs": {}}).encode())
            _add(tar, f"{digest[:12]}/layer.tar", b"layer")
            manifest.append({"Config": config_name, "RepoTags": list(tags) if n == 0 else [],
                             "Layers": [f"{digest[:12]}/layer.tar"]})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    data = raw.getvalue()
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return path


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class FakeDocker:
    """State: {"images": {id: [tags]}, "containers": {cid: image id}, "registry": {ref: id}, "calls": [argv]}."""

    def __init__(self, state_path):
        self.path = Path(state_path)
        if not self.path.exists():
            self.save({"images": {}, "containers": {}, "registry": {}, "calls": []})

    def load_state(self):
        return json.loads(self.path.read_text())

    def save(self, state):
        self.path.write_text(json.dumps(state, indent=1, sort_keys=True))

    def add_image(self, name, tags=()):
        state = self.load_state()
        state["images"][image_id(name)] = list(tags)
        self.save(state)
        return image_id(name)

    def add_container(self, cid, image):
        state = self.load_state()
        state["containers"][cid] = image
        self.save(state)

    def calls(self, verb=None):
        return [c for c in self.load_state()["calls"] if verb is None or c[:len(verb)] == verb]

    @staticmethod
    def _find(state, ref):
        if ref in state["images"]:
            return ref
        for iid, tags in state["images"].items():
            if ref in tags or f"{ref}:latest" in tags:
                return iid
        return None

    def _tag(self, state, iid, ref):
        for tags in state["images"].values():
            if ref in tags:
                tags.remove(ref)
        state["images"].setdefault(iid, [])
        state["images"][iid].append(ref)

    def run(self, argv):
        """(rc, stdout, stderr) of `docker <argv[1:]>`."""
        state = self.load_state()
        args = list(argv[1:])
        state["calls"].append(args)
        try:
            return self._dispatch(state, args)
        finally:
            self.save(state)

    def _dispatch(self, state, args):
        if args[:1] == ["version"]:
            return 0, "20.10.24+dfsg1\n", ""
        if args[:2] == ["image", "inspect"]:
            iid = self._find(state, args[-1])
            if iid is None:
                return 1, "", f"Error: No such image: {args[-1]}\n"
            return 0, json.dumps({"Id": iid, "RepoTags": state["images"][iid], "RepoDigests": []}) + "\n", ""
        if args[:1] == ["load"]:
            with tarfile.open(args[args.index("--input") + 1], "r:*") as tar:
                manifest = json.load(tar.extractfile("manifest.json"))
            for entry in manifest:
                iid = "sha256:" + os.path.basename(entry["Config"]).replace(".json", "")
                state["images"].setdefault(iid, [])
                for tag in entry.get("RepoTags") or []:
                    self._tag(state, iid, tag)
            return 0, "Loaded image: x\n", ""
        if args[:1] == ["pull"]:
            ref = args[-1]
            if ref not in state["registry"]:
                return 1, "", f"Error response from daemon: manifest for {ref} not found\n"
            self._tag(state, state["registry"][ref], ref)
            return 0, ref + "\n", ""
        if args[:1] == ["build"]:
            ref = args[args.index("--tag") + 1]
            iid = image_id(f"built:{ref}:{args[-1]}")
            self._tag(state, iid, ref)
            return 0, iid + "\n", ""
        if args[:1] == ["ps"]:
            wanted = args[args.index("--filter") + 1].split("=", 1)[1]
            return 0, "".join(f"{cid}\n" for cid, iid in sorted(state["containers"].items()) if iid == wanted), ""
        if args[:2] == ["image", "rm"]:
            for target in args[2:]:
                iid = self._find(state, target)
                if iid is None:
                    return 1, "", f"Error: No such image: {target}\n"
                if any(used == iid for used in state["containers"].values()):
                    return 1, "", f"Error response from daemon: conflict: unable to remove {target}: image is being used\n"
                if target in state["images"][iid]:
                    state["images"][iid].remove(target)
                if not state["images"][iid] or target == iid:
                    del state["images"][iid]
            return 0, "Deleted\n", ""
        return 1, "", f"fake docker: unknown command {args}\n"


def cli_main(state_path):
    rc, out, err = FakeDocker(state_path).run(sys.argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


def fake_docker_cli(directory):
    """(path of an executable fake `docker`, its FakeDocker) with its state in directory."""
    directory = Path(directory)
    state = directory / "docker-state.json"
    script = directory / "docker"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                      f"from compose_testlib import cli_main\nsys.exit(cli_main({str(state)!r}))\n")
    script.chmod(0o755)
    return str(script), FakeDocker(state)


def run_module(module, args, check=False):
    """The result of shipit.deploy.<module> run by ansible on localhost (with --check --diff when check)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
            "-m", f"shipit.deploy.{module}", "-e", f"ansible_python_interpreter={sys.executable}",
            "-a", json.dumps(args)]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
