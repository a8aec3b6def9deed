#!/usr/bin/env bash
# Installs what `make test` needs: npm packages always; Debian packages
# (chromium for the browser test, docker-compose to validate the compose
# file, redis-server for the scale-out tests, which start their own on a
# free port, nginx-light for the fallback tests' buffering proxy, likewise)
# when running as root on Debian and they are missing. Elsewhere it
# says what is missing and the tests skip loudly (or fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Debian's nginx is in /usr/sbin, which a non-login PATH may lack.
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)

if ((${#need[@]})); then
  if [[ $(id -u) == 0 && -f /etc/debian_version ]]; then
    echo "install-test-deps: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [[ " ${need[*]} " == *" redis-server "* ]]; then
      # Only the binary is wanted: tests run their own servers. Stop the
      # system one the package may have started.
      service redis-server stop >/dev/null 2>&1 || true
    fi
    if [[ " ${need[*]} " == *" nginx-light "* ]]; then
      service nginx stop >/dev/null 2>&1 || true # likewise: the tests start their own
    fi
  else
    echo "install-test-deps: MISSING COMPONENT(S): ${need[*]} (not root on Debian: install them yourself)" >&2
  fi
fi

if [[ ! -f client/node_modules/.package-lock.json || client/package-lock.json -nt client/node_modules/.package-lock.json ]]; then
  (cd client && npm ci --no-audit --no-fund)
fi
