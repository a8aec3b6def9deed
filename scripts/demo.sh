#!/usr/bin/env bash
# Runs the backend and the BFF natively, serves the demo page and stops both
# cleanly on Ctrl-C. Addresses and the data directory can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:8081}
BFF_ADDR=${BFF_ADDR:-127.0.0.1:8080}
DATA_DIR=${DATA_DIR:-.data}
export LOG_LEVEL=${LOG_LEVEL:-info}

# Scenarios on: the demo page scripts its exports (fails at 60 %, stalls, …).
SCENARIOS=${SCENARIOS:-on} ./bin/backend -addr "$BACKEND_ADDR" -data-dir "$DATA_DIR" &
backend=$!
SCENARIOS=${SCENARIOS:-on} ./bin/bff -addr "$BFF_ADDR" -backend-url "http://$BACKEND_ADDR" -static-dir client/dist/demo &
bff=$!

stop() {
  trap - INT TERM EXIT
  kill -TERM "$backend" "$bff" 2>/dev/null || true
  wait "$backend" "$bff" 2>/dev/null || true
}
trap stop INT TERM EXIT

# Wait (bounded) until both answer their health checks.
for _ in $(seq 100); do
  if curl -fsS "http://$BACKEND_ADDR/healthz" >/dev/null 2>&1 && curl -fsS "http://$BFF_ADDR/healthz" >/dev/null 2>&1; then
    port=${BFF_ADDR##*:}
    printf '\n  exportstream demo: http://localhost:%s   (Ctrl-C stops it)\n\n' "$port"
    wait -n "$backend" "$bff"
    exit $?
  fi
  if ! kill -0 "$backend" 2>/dev/null || ! kill -0 "$bff" 2>/dev/null; then
    echo "demo: a server exited at start (is the port in use?)" >&2
    exit 1
  fi
  sleep 0.1
done
echo "demo: the servers did not become healthy in 10 s" >&2
exit 1
