#!/usr/bin/env bash
# The bare-minimum deploy, no Ansible: the baseline every shipit figure is divided by.
#
#   bench/baseline.sh [--compose] PORT ARTIFACT VERSION [KEY] [USER]
#
# Everything over one SSH connection reused (ControlMaster/ControlPersist; Ansible's key, user and port), and
# a bounded poll of /health until it answers VERSION (at most 40 polls, 0.25 s apart). It deploys instances
# beside shipit's own, set up once and untimed by python bench/run.py, so shipit's releases and ledger are
# never touched.
#
# systemd (ARTIFACT: pulse's tarball): stream the tarball, unpack it into a new release directory, run the
#   migrations, switch the `current` symlink atomically, restart pulse-bare.service (/srv/pulse-bare, port
#   8090; bench/baseline_setup.sh), poll.
# --compose (ARTIFACT: the `docker save` archive of pulse:VERSION): load it unless the host has that image,
#   write the project's compose.yaml (pulse + PostgreSQL, project pulse-bare, port 8091), run the migrations,
#   `docker compose up -d --wait`, poll. The PostgreSQL image is the one shipit's first deploy loaded.
set -euo pipefail

kind=systemd
if [ "${1:-}" = --compose ]; then
    kind=compose
    shift
fi
port=${1:?usage: baseline.sh [--compose] PORT ARTIFACT VERSION [KEY] [USER]}
artifact=${2:?artifact}
version=${3:?version}
key=${4:-$(dirname "$0")/../.lab/id_ed25519}
user=${5:-deploy}
control_dir=${BASELINE_CONTROL_DIR:-${TMPDIR:-/tmp}/shipit-bench-cp}
mkdir -p -m 0700 "$control_dir"
target=(ssh -i "$key" -p "$port" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=120s
        -o "ControlPath=$control_dir/%r@%h:%p" "$user@127.0.0.1")

poll=$(cat <<'POLL'
for _ in $(seq 40); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$health_port/health" 2>/dev/null | grep -q "\"version\": *\"$version\""; then
        exit 0
    fi
    sleep 0.25
done
echo "never answered version $version on port $health_port's /health" >&2
exit 1
POLL
)

systemd=$(cat <<'REMOTE'
set -euo pipefail
version=$1 app=/srv/pulse-bare health_port=8090
dir=$app/releases/$(date -u +%Y%m%dT%H%M%S%NZ)
mkdir -p "$dir"
cat > "$dir.tar.gz"
tar -xzf "$dir.tar.gz" -C "$dir" && rm "$dir.tar.gz"
runuser -u pulse-bare -- env PULSE_DATABASE_URL=sqlite:///$app/shared/pulse.db "$dir/bin/pulse" migrate >/dev/null
ln -sfn "$dir" "$app/current.tmp" && mv -T "$app/current.tmp" "$app/current"
systemctl restart pulse-bare.service
REMOTE
)

compose=$(cat <<'REMOTE'
set -euo pipefail
version=$1 app=/srv/pulse-bare-stack health_port=8091
install -d -m 0700 "$app"
cat > "$app/compose.yaml" <<YAML
name: pulse-bare
services:
  postgres:
    image: shipit-lab/postgres:latest
    environment: {POSTGRES_USER: pulse, POSTGRES_PASSWORD: bench-only, POSTGRES_DB: pulse}
    volumes: [pgdata:/var/lib/postgresql/data]
  pulse:
    image: pulse:$version
    init: true
    depends_on: {postgres: {condition: service_healthy}}
    environment:
      PULSE_DATABASE_URL: postgresql://pulse:bench-only@postgres:5432/pulse?connect_timeout=5
    ports: ["8091:8080"]
volumes:
  pgdata: {}
YAML
docker compose -f "$app/compose.yaml" run --rm -T pulse migrate >/dev/null 2>&1
docker compose -f "$app/compose.yaml" up -d --wait >/dev/null 2>&1
REMOTE
)

if [ "$kind" = systemd ]; then
    # One round trip: the tarball on stdin, the script as the command.
    "${target[@]}" "sudo bash -c $(printf %q "$systemd"$'\n'"$poll") bash $version" <"$artifact"
else
    if ! "${target[@]}" sudo docker image inspect "pulse:$version" >/dev/null 2>&1; then
        "${target[@]}" sudo docker load -q <"$artifact" >/dev/null
    fi
    "${target[@]}" "sudo bash -c $(printf %q "$compose"$'\n'"$poll") bash $version"
fi
