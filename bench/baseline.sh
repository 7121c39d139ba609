#!/usr/bin/env bash
# The bare minimum deploy, no Ansible: the baseline every shipit figure is divided by.
#
#   bench/baseline.sh PORT TARBALL VERSION [KEY] [USER]
#
# Over one SSH connection (ControlMaster/ControlPersist, the same key, user and port as Ansible): copy the
# tarball, unpack it into a new release directory, run its migrations, switch the `current` symlink
# atomically, restart the unit and poll /health until it answers VERSION (at most 40 polls, 0.25 s apart).
# It deploys pulse-bare (/srv/pulse-bare, pulse-bare.service, port 8090), an instance beside shipit's that
# `python -m bench` sets up once (bench/baseline_setup.sh), so it never touches shipit's release or ledger.
set -euo pipefail

port=${1:?usage: baseline.sh PORT TARBALL VERSION [KEY] [USER]}
tarball=${2:?tarball}
version=${3:?version}
key=${4:-$(dirname "$0")/../.lab/id_ed25519}
user=${5:-deploy}
control_dir=${BASELINE_CONTROL_DIR:-${TMPDIR:-/tmp}/shipit-bench-cp}
mkdir -p -m 0700 "$control_dir"

ssh_opts=(-i "$key" -p "$port" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=120s
          -o "ControlPath=$control_dir/%r@%h:%p")
release=$(date -u +%Y%m%dT%H%M%S%NZ)

# The work on the host, run by root: the tarball arrives on stdin.
remote=$(cat <<'REMOTE'
set -euo pipefail
release=$1 version=$2 app=/srv/pulse-bare
dir=$app/releases/$release
mkdir -p "$dir"
cat > "$dir.tar.gz"
tar -xzf "$dir.tar.gz" -C "$dir" && rm "$dir.tar.gz"
runuser -u pulse-bare -- env PULSE_DATABASE_URL=sqlite:///$app/shared/pulse.db "$dir/bin/pulse" migrate >/dev/null
ln -sfn "$dir" "$app/current.tmp" && mv -T "$app/current.tmp" "$app/current"
systemctl restart pulse-bare.service
for _ in $(seq 40); do
    if curl -fsS --max-time 1 http://127.0.0.1:8090/health 2>/dev/null | grep -q "\"version\": *\"$version\""; then
        exit 0
    fi
    sleep 0.25
done
echo "pulse-bare never answered version $version on /health" >&2
exit 1
REMOTE
)

# One round trip over the reused master connection: the tarball on stdin, the script as the command.
ssh "${ssh_opts[@]}" "$user@127.0.0.1" "sudo bash -c $(printf %q "$remote") bash $release $version" <"$tarball"
