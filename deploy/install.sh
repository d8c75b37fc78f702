#!/bin/sh
# Install pdm-gateway as a systemd service on Debian/Ubuntu (run as root from a checkout):
#   sudo sh deploy/install.sh [CONFIG]
# Creates the system user pdm-gateway, a venv in /opt/pdm-gateway/venv, the config
# /etc/pdm-gateway/gateway.toml (from CONFIG or the example; an existing one is kept) and
# installs and enables the unit. State (journal, models, keys, certificates) lives in
# /var/lib/pdm-gateway, created by systemd (StateDirectory=).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=${1:-$SRC/deploy/examples/gateway.toml}
PREFIX=/opt/pdm-gateway

if [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi
command -v python3 >/dev/null || { echo "install.sh: python3 (>= 3.11) is required" >&2; exit 1; }

id pdm-gateway >/dev/null 2>&1 || useradd --system --home-dir /var/lib/pdm-gateway \
    --shell /usr/sbin/nologin --user-group pdm-gateway
getent group dialout >/dev/null && usermod -a -G dialout pdm-gateway

install -d -m 0755 "$PREFIX"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/venv/bin/pip" install --quiet "$SRC"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -d -m 0750 -o root -g pdm-gateway /etc/pdm-gateway
if [ ! -e /etc/pdm-gateway/gateway.toml ]; then
    sed 's|^state_dir = .*|state_dir = "/var/lib/pdm-gateway"|' "$CONFIG" > /etc/pdm-gateway/gateway.toml
    chown root:pdm-gateway /etc/pdm-gateway/gateway.toml
    chmod 0640 /etc/pdm-gateway/gateway.toml
fi
"$PREFIX/venv/bin/pdm-gateway" check-config /etc/pdm-gateway/gateway.toml

install -m 0644 "$SRC/deploy/systemd/pdm-gateway.service" /etc/systemd/system/pdm-gateway.service
systemctl daemon-reload
systemctl enable --now pdm-gateway
echo "pdm-gateway installed: systemctl status pdm-gateway; pdm-gateway status --config /etc/pdm-gateway/gateway.toml"
