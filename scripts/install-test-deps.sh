#!/usr/bin/env bash
# Installs what `make test` needs: npm packages always; Debian packages
# (chromium for the browser test, docker-compose to validate the compose
# file) when running as root on Debian and they are missing. Elsewhere it
# says what is missing and the tests skip loudly (or fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl)

if ((${#need[@]})); then
  if [[ $(id -u) == 0 && -f /etc/debian_version ]]; then
    echo "install-test-deps: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "install-test-deps: MISSING COMPONENT(S): ${need[*]} (not root on Debian: install them yourself)" >&2
  fi
fi

if [[ ! -f client/node_modules/.package-lock.json || client/package-lock.json -nt client/node_modules/.package-lock.json ]]; then
  (cd client && npm ci --no-audit --no-fund)
fi
