"""Whether the ansible-playbook process of another run is gone: real processes of this machine."""

import os
import subprocess

from ansible_collections.shipit.deploy.plugins.plugin_utils import _controller


def test_identity_names_a_live_process():
    me = _controller.identity(os.getpid())
    assert me["pid"] == os.getpid() and me["start"] and me["boot_id"] and me["host"]
    assert not _controller.is_gone(me)
    assert _controller.identity()["pid"] == os.getppid()


def test_a_process_that_exited_is_gone():
    child = subprocess.Popen(["sleep", "30"])
    seen = _controller.identity(child.pid)
    assert not _controller.is_gone(seen)
    child.kill()
    child.wait()
    assert _controller.is_gone(seen)


def test_a_reused_pid_is_not_the_same_process():
    seen = dict(_controller.identity(os.getpid()), start="1")
    assert _controller.is_gone(seen)


def test_nothing_is_judged_about_other_machines_boots_or_containers():
    child = subprocess.Popen(["true"])
    seen = _controller.identity(child.pid)
    child.wait()
    for key, value in (("host", "ci-runner-7"), ("boot_id", "another-boot"), ("pid_namespace", "pid:[1]")):
        assert not _controller.is_gone(dict(seen, **{key: value})), key
    assert not _controller.is_gone(None) and not _controller.is_gone({"host": seen["host"]})


def test_the_taker_of_a_lock_is_named_and_keeps_what_it_was_given():
    args = {"holder_info": {"job": "ci-42"}, "controller": ""}
    me = _controller.name_the_taker(args)
    assert args["holder_info"] == {"job": "ci-42", "controller_process": me}
    assert args["controller"] == me["host"] and me["pid"] == os.getppid()
    named = {"controller": "ci-runner-7"}
    _controller.name_the_taker(named)
    assert named["controller"] == "ci-runner-7"


def test_only_a_lock_refused_by_a_dead_run_of_this_controller_may_be_broken():
    child = subprocess.Popen(["true"])
    dead = _controller.identity(child.pid)
    child.wait()
    alive = _controller.identity(os.getpid())

    def refused(process, **extra):
        return dict({"acquired": False, "lock": {"token": "run-1", "holder_info": {"controller_process": process}}}, **extra)

    assert _controller.dead_holder_token(refused(dead)) == "run-1"
    assert _controller.dead_holder_token(refused(alive)) is None
    assert _controller.dead_holder_token(refused(dead, failed=True)) is None
    assert _controller.dead_holder_token(dict(refused(dead), acquired=True)) is None
    assert _controller.dead_holder_token({"acquired": False}) is None
