"""python -m lab [--inventory DIR] up|down|status|images|load IMAGE"""

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from . import hosts as lab_hosts
from .engine import ensure_engine
from .images import ensure_image


def cmd_images(_args):
    ensure_engine()
    for kind in ("host", "runtime", "postgres"):
        print(f"{kind}: {ensure_image(kind)}")


def cmd_up(args):
    started = time.monotonic()
    ensure_engine()
    host_ref = ensure_image("host")
    ensure_image("runtime")
    ensure_image("postgres")  # the database service of Compose stacks
    public_key = lab_hosts.ensure_ssh_key()
    inventory = lab_hosts.lab_hosts(args.inventory)
    names = args.hosts or sorted(inventory)

    def bring_up(name):
        lab_hosts.start_host(name, inventory[name], host_ref)
        state = lab_hosts.wait_booted(name)
        if state != "running":
            failed = lab_hosts.docker_exec(name, "systemctl", "--failed", "--no-legend", check=False).stdout.decode()
            raise RuntimeError(f"{name}: systemd is {state!r}; failed units:\n{failed}")
        lab_hosts.provision(name, public_key, docker=inventory[name].get("lab_docker", True))
        lab_hosts.wait_ssh(inventory[name])
        return name

    # Hosts boot in parallel: most of the time is systemd and dockerd starting inside each.
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        for name in pool.map(bring_up, names):
            print(f"lab: {name} up (ssh 127.0.0.1:{inventory[name]['ansible_port']})", flush=True)
    print(f"lab: up in {time.monotonic() - started:.1f}s")
    cmd_status(args)


def cmd_status(args):
    inventory = lab_hosts.lab_hosts(args.inventory)
    print(f"{'HOST':<10} {'SSH':<16} {'CONTAINER':<10} {'SYSTEMD':<10} DOCKER")
    healthy = True
    for name in args.hosts or sorted(inventory):
        status = lab_hosts.host_status(name, docker=inventory[name].get("lab_docker", True))
        healthy &= status["systemd"] == "running" and status["docker"] not in ("-", "not answering")
        print(f"{name:<10} 127.0.0.1:{inventory[name]['ansible_port']:<6} {status['container']:<10} "
              f"{status['systemd']:<10} {status['docker']}")
    return 0 if healthy else 1


def cmd_down(args):
    for name in args.hosts or sorted(lab_hosts.lab_hosts(args.inventory)):
        lab_hosts.remove_host(name)
        print(f"lab: {name} removed")


def cmd_load(args):
    for name in args.hosts or sorted(lab_hosts.lab_hosts(args.inventory)):
        lab_hosts.load_image(name, args.image)
        print(f"lab: {args.image} loaded into {name}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--inventory", help="the hosts of this inventory (a directory or its hosts.yml; "
                                            "default inventories/lab), e.g. bench/inventory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("up", cmd_up, "install/start Docker, build images if their recipe changed, start the lab hosts"),
        ("down", cmd_down, "remove the lab hosts and their volumes"),
        ("status", cmd_status, "show each host's systemd and Docker state (exit 1 unless all are healthy)"),
        ("images", cmd_images, "build the lab images if missing"),
        ("load", cmd_load, "copy a local Docker image into the hosts' own engines"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.set_defaults(func=func)
        if name == "load":
            cmd.add_argument("image")
        if name != "images":
            cmd.add_argument("--hosts", nargs="+", help="only these inventory hosts (default: all)")
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except RuntimeError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
