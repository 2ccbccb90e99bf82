#!/usr/bin/env bash
# Managed by this repo. Machine-side packages the sandbox needs (Debian 12). Idempotent and quiet
# when everything is present.
set -euo pipefail
pkgs=(debootstrap systemd-container iptables iproute2 openssh-client git make rsync curl
      openssl pebble restic python3-venv sqlite3 jq shellcheck e2fsprogs)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "[deps] installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
