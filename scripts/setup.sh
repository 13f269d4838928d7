#!/usr/bin/env bash
# Installs what Edgeward needs on Debian 12 (apt packages, a virtual environment in .venv).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io busybox-static docker-registry iptables python3-venv docker-compose prometheus etcd-server postgresql haproxy chromium chromium-driver git openssh-server wireguard-go wireguard-tools tcpdump)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]} (run with sudo)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/edge-enforcer ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: creating the virtual environment in .venv"
  python3 -m venv .venv
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[dev]'; } \
      >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "setup: installing the Python dependencies failed (log above)" >&2
    exit 1
  fi
  touch .venv/.installed
fi
