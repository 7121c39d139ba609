#!/usr/bin/env bash
# The bare-minimum Compose deploy, no Ansible: the baseline of shipit's Compose figures.
#
#   bench/baseline_compose.sh PORT IMAGE_ARCHIVE VERSION [KEY] [USER]
#
# Over one reused SSH connection (ControlMaster/ControlPersist, Ansible's key, user and port): ship the
# `docker save` archive of pulse:VERSION unless the host has that image, write the project's compose.yaml
# (pulse + PostgreSQL, like the lab's stack), run the migrations, `docker compose up -d --wait`, and poll
# /health until it answers VERSION (at most 40 polls, 0.25 s apart). Project pulse-bare on port 8091, beside
# shipit's own stack; the PostgreSQL image is the one shipit's first deploy loaded.
set -euo pipefail

port=${1:?usage: baseline_compose.sh PORT IMAGE_ARCHIVE VERSION [KEY] [USER]}
archive=${2:?image archive}
version=${3:?version}
key=${4:-$(dirname "$0")/../.lab/id_ed25519}
user=${5:-deploy}
control_dir=${BASELINE_CONTROL_DIR:-${TMPDIR:-/tmp}/shipit-bench-cp}
mkdir -p -m 0700 "$control_dir"
ssh_opts=(-i "$key" -p "$port" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=120s
          -o "ControlPath=$control_dir/%r@%h:%p")
target=(ssh "${ssh_opts[@]}" "$user@127.0.0.1")

if ! "${target[@]}" sudo docker image inspect "pulse:$version" >/dev/null 2>&1; then
    "${target[@]}" sudo docker load -q <"$archive" >/dev/null
fi

remote=$(cat <<'REMOTE'
set -euo pipefail
version=$1 app=/srv/pulse-bare-stack
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
docker compose -f "$app/compose.yaml" up -d --wait --quiet-pull >/dev/null 2>&1
for _ in $(seq 40); do
    if curl -fsS --max-time 1 http://127.0.0.1:8091/health 2>/dev/null | grep -q "\"version\": *\"$version\""; then
        exit 0
    fi
    sleep 0.25
done
echo "pulse-bare (Compose) never answered version $version on /health" >&2
exit 1
REMOTE
)
"${target[@]}" "sudo bash -c $(printf %q "$remote") bash $version"
