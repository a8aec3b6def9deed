#!/usr/bin/env bash
# Builds bin/bff-pprof and bin/backend-pprof: the real binaries plus
# net/http/pprof on $PPROF_ADDR, added by `go build -overlay` so the shipped
# source stays as it is. Profile a run, e.g.:
#   PPROF_ADDR=127.0.0.1:6060 bin/bff-pprof -addr 127.0.0.1:8080 … &
#   go tool pprof -top http://127.0.0.1:6060/debug/pprof/heap
set -euo pipefail
cd "$(dirname "$0")/../.."
overlay=$(mktemp)
trap 'rm -f "$overlay"' EXIT
src=$PWD/bench/profiling/pprof_overlay.go.txt
printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' \
  "$PWD/bff/cmd/bff/zz_pprof_overlay.go" "$src" \
  "$PWD/backend/cmd/backend/zz_pprof_overlay.go" "$src" >"$overlay"
CGO_ENABLED=0 go build -trimpath -overlay "$overlay" -o bin/bff-pprof ./bff/cmd/bff
CGO_ENABLED=0 go build -trimpath -overlay "$overlay" -o bin/backend-pprof ./backend/cmd/backend
echo "built bin/bff-pprof bin/backend-pprof (pprof on \$PPROF_ADDR)"
