#!/usr/bin/env bash
# Install tradectl as a systemd service from a checkout in $PREFIX (default /opt/tradectl).
# Run as root. Safe to run again: it never overwrites /etc/tradectl/config.toml.
set -euo pipefail
PREFIX=${PREFIX:-/opt/tradectl}
cd "$PREFIX"

if [ ! -x .venv/bin/tradectl ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q .
fi

# The daemon's own user and group; members of group tradectl may use the CLI.
install -D -m 0644 systemd/tradectl.sysusers /etc/sysusers.d/tradectl.conf
systemd-sysusers /etc/sysusers.d/tradectl.conf

# Config readable by the daemon, writable by root; credentials readable by root only
# (systemd hands them to the daemon through LoadCredential=).
install -d -m 0750 -o root -g tradectl /etc/tradectl
install -d -m 0700 -o root -g root /etc/tradectl/credentials
if [ ! -e /etc/tradectl/config.toml ]; then
    install -m 0640 -o root -g tradectl systemd/config.toml /etc/tradectl/config.toml
fi

# The daemon, and (installed, not enabled) the dead-man's switch and the daily cut-off.
for unit in tradectl.service tradectl-deadman.service tradectl-deadman.timer \
            tradectl-cutoff.service tradectl-cutoff.timer; do
    install -m 0644 "systemd/$unit" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
"$PREFIX/.venv/bin/tradectl" config check --config /etc/tradectl/config.toml

cat <<EOT
installed. Next:
  systemctl enable --now tradectl
  systemctl enable tradectl-deadman.timer        # optional: flatten when unhealthy 2 min
  systemctl enable --now tradectl-cutoff.timer   # optional: flatten daily at 23:55 UTC
  usermod -aG tradectl YOUR_USER   # then log in again to use the CLI
  $PREFIX/.venv/bin/tradectl --config /etc/tradectl/config.toml status
EOT
