#!/usr/bin/env bash
# Run once per bench host as root (untimed; python bench/run.py does it): pulse-bare, the instance the
# bare-minimum deploy (bench/baseline.sh) replaces, beside shipit's own pulse and never touching it.
set -euo pipefail
id pulse-bare >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pulse-bare
install -d -m 0755 /srv/pulse-bare /srv/pulse-bare/releases
install -d -m 0750 -o pulse-bare -g pulse-bare /srv/pulse-bare/shared
cat > /etc/systemd/system/pulse-bare.service <<'UNIT'
[Unit]
Description=pulse-bare (the benchmarks' bare-minimum deploy)

[Service]
User=pulse-bare
WorkingDirectory=/srv/pulse-bare/current
Environment=PULSE_LISTEN_HOST=127.0.0.1 PULSE_PORT=8090 PULSE_DATABASE_URL=sqlite:////srv/pulse-bare/shared/pulse.db
ExecStart=/srv/pulse-bare/current/bin/pulse serve
Restart=on-failure
UNIT
systemctl daemon-reload
# Keep the newest 3 releases of earlier bench runs.
find /srv/pulse-bare/releases -mindepth 1 -maxdepth 1 -type d | sort | head -n -3 | xargs -r rm -rf
