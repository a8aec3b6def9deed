#!/usr/bin/env bash
# `make test-compose`: docker-compose.yml for real. Builds the three images
# from the Dockerfiles users build, starts the stack with `up --wait`, and
# through nginx (http://127.0.0.1:<port>, the only published port) creates an
# export, follows its events (nginx → BFF → backend), downloads the file and
# checks its SHA-256; checks health, users, read-only filesystems and JSON
# logs; checks the secrets the stack made at its first start (kept by a
# second run and a restart, different in a fresh volume, a published sample
# refused); restarts the backend in the middle of a second export and sees
# it complete for its subscriber; runs the integration profile; `down -v`.
#
# For machines without an image registry (CI): base images are made locally
# (scripts/docker-base-images.sh) and passed as build arguments, and nothing
# is pulled (--pull never). As root on Debian without an engine it installs
# docker.io and runs dockerd itself (stopped at the end); without
# `docker compose` it builds the compose plugin from the Go module proxy
# into .tools/docker/. Without Docker otherwise: a loud skip, or a failure
# under CI=true. Every step is bounded in time; cleanup runs on failure too.
#
# `make test-compose-scale` (COMPOSE_SCALE=1) runs the same on top of
# docker-compose.scale.yml: Redis, 2 backends, 2 BFFs behind nginx. Then the
# integration suite's requests alternate between the BFFs, and instead of a
# restart it kills (SIGKILL) one backend and the BFF holding the subscriber's
# stream in the middle of an export; the subscriber reconnects through nginx
# with Last-Event-ID and sees the export to its one COMPLETED.
#
#   COMPOSE_TEST_PORT=3000   publish nginx there (default: a free port)
#   COMPOSE_VERSION=v5.6.0   the compose plugin to build when missing
#   COMPOSE_SCALE=1          the scale-out variant
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
compose_version=${COMPOSE_VERSION:-v5.6.0}
t0=$SECONDS
phase_start=$SECONDS
phase_name=

say() { echo "compose-test: $*"; }
phase() { # phase NAME: ends the previous phase (with its time), starts NAME
  [[ -n $phase_name ]] && say "-- $phase_name: $((SECONDS - phase_start)) s"
  phase_name=$1
  phase_start=$SECONDS
  say "== $1 (t=$((SECONDS - t0)) s)"
}
fail() {
  echo "compose-test: FAIL: $*" >&2
  exit 1
}
missing() {
  echo "################################################################" >&2
  echo "MISSING COMPONENT: docker ($*); docker compose NOT tested" >&2
  echo "################################################################" >&2
  [[ ${CI:-} == true ]] && exit 1
  exit 0
}

work=$(mktemp -d)
dockerd_pid=
project=
cleanup() {
  local status=$?
  set +e
  if [[ -n $project ]]; then
    if ((status != 0)); then
      echo "compose-test: --- state at failure ---" >&2
      timeout 30 "${compose[@]}" ps -a >&2
      timeout 30 "${compose[@]}" logs --no-color --tail 40 >&2
    fi
    timeout 120 "${compose[@]}" --profile test down -v --remove-orphans -t 20 >/dev/null 2>&1
  fi
  if [[ -n $dockerd_pid ]]; then
    say "stopping the dockerd this test started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  fi
  rm -rf "$work"
  [[ -n $phase_name ]] && say "-- $phase_name: $((SECONDS - phase_start)) s (interrupted)"
  say "total: $((SECONDS - t0)) s ($( ((status == 0)) && echo PASS || echo "FAIL, status $status"))"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the engine ------------------------------------------------------------
phase "docker engine"
if timeout 20 docker info >/dev/null 2>&1; then
  say "using the running engine ($(docker version --format '{{.Server.Version}}'))"
elif [[ $(id -u) == 0 && -f /etc/debian_version ]]; then
  if ! command -v dockerd >/dev/null 2>&1; then
    say "apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -qq docker.io >"$work/apt.log" 2>&1 ||
      { timeout 120 apt-get update -qq && timeout 300 apt-get install -y -qq docker.io >"$work/apt.log" 2>&1; } ||
      { tail -20 "$work/apt.log" >&2; fail "apt-get install docker.io"; }
  fi
  command -v docker >/dev/null 2>&1 || fail "docker.io installed no docker client"
  pidfile=/var/run/docker.pid
  if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  say "starting dockerd (log: $root/.tools/dockerd.log)"
  mkdir -p .tools
  dockerd >.tools/dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 .tools/dockerd.log >&2; fail "dockerd exited"; }
    sleep 0.5
  done
  timeout 5 docker info >/dev/null 2>&1 || { tail -20 .tools/dockerd.log >&2; fail "dockerd did not answer in 30 s"; }
  say "dockerd $(docker version --format '{{.Server.Version}}') up"
elif command -v docker >/dev/null 2>&1; then
  missing "a docker client but no engine answers, and not root on Debian to start one"
else
  missing "no docker, and not root on Debian to install docker.io"
fi

# --- docker compose v2+ ----------------------------------------------------
phase "docker compose"
if ! timeout 20 docker compose version >/dev/null 2>&1; then
  export DOCKER_CONFIG=$root/.tools/docker
  plugin=$DOCKER_CONFIG/cli-plugins/docker-compose
  if ! timeout 20 docker compose version 2>/dev/null | grep -q "${compose_version#v}"; then
    command -v go >/dev/null 2>&1 || missing "no docker compose, and no Go to build it"
    say "building the compose plugin $compose_version from the Go module proxy"
    dir=$(timeout 300 go mod download -json "github.com/docker/compose/v5@$compose_version" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $dir ]] || fail "go mod download github.com/docker/compose/v5@$compose_version"
    cp -r "$dir" "$work/compose-src"
    chmod -R u+w "$work/compose-src"
    mkdir -p "$(dirname "$plugin")"
    (cd "$work/compose-src" && GOWORK=off CGO_ENABLED=0 timeout 600 go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$compose_version" \
      -o "$plugin" ./cmd) || fail "building the compose plugin"
  fi
fi
compose_v=$(timeout 20 docker compose version --short) || fail "docker compose does not run"
say "docker compose $compose_v${DOCKER_CONFIG:+ (from $DOCKER_CONFIG)}"

# --- base images -----------------------------------------------------------
phase "base images"
images=$(timeout 300 scripts/docker-base-images.sh) || fail "scripts/docker-base-images.sh"
while IFS='=' read -r k v; do
  [[ $k == *_IMAGE ]] && export "$k=$v" && say "$k=$v"
done <<<"$images"
[[ -n ${GO_IMAGE:-} && -n ${NODE_IMAGE:-} && -n ${NGINX_IMAGE:-} && -n ${REDIS_IMAGE:-} ]] || fail "base images not made"

# --- build and start -------------------------------------------------------
port=${COMPOSE_TEST_PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
export CLIENT_PORT=$port
project=exportstream-test-$$
compose=(docker compose -p "$project" -f "$root/docker-compose.yml")
services=(backend bff client)
declare -A replicas=([backend]=1 [bff]=1 [client]=1)
if [[ ${COMPOSE_SCALE:-} == 1 ]]; then
  compose+=(-f "$root/docker-compose.scale.yml")
  services=(redis backend bff client)
  replicas=([redis]=1 [backend]=2 [bff]=2 [client]=1)
  export REDIS_CLAIM_IDLE=5s # a killed backend's export moves on within seconds
  say "scale-out variant: docker-compose.scale.yml on top"
fi
base=http://127.0.0.1:$port

phase "build + up --wait"
timeout 720 "${compose[@]}" up -d --build --pull never --wait --wait-timeout 120 >"$work/up.log" 2>&1 ||
  { tail -40 "$work/up.log" >&2; fail "docker compose up --build --wait"; }
say "$(grep -c '^Step ' "$work/up.log" || true) build steps, $(grep -c 'Using cache' "$work/up.log" || true) from the layer cache"

phase "the stack"
ps_out=$(timeout 30 "${compose[@]}" ps --format '{{.Service}} {{.Health}}')
echo "$ps_out" | sed 's/^/  /'
for s in "${services[@]}"; do
  n=$(grep -cx "$s healthy" <<<"$ps_out" || true)
  [[ $n == "${replicas[$s]}" ]] || fail "$s: $n healthy, want ${replicas[$s]}"
done
# Published ports: nginx only, on 127.0.0.1 only.
ports=$(docker ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}} {{.Ports}}')
echo "$ports" | sed 's/^/  /'
! grep -E -- '->' <<<"$ports" | grep -v -- '-client-' >/dev/null || fail "a service other than client is published"
! grep -oE '[0-9a-f.:\[\]]+:[0-9]+->' <<<"$ports" | grep -v '^127\.0\.0\.1:' >/dev/null || fail "published beyond 127.0.0.1"
for id in $("${compose[@]}" ps -q); do
  s=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}-{{index .Config.Labels "com.docker.compose.container-number"}}' "$id")
  read -r user ro restart <<<"$(docker inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.RestartPolicy.Name}}' "$id")"
  say "$s: user $user, read-only root $ro, restart $restart"
  [[ -n $user && $user != 0* && $user != root ]] || fail "$s runs as root"
  [[ $ro == true ]] || fail "$s has a writable root filesystem"
  [[ $restart == unless-stopped ]] || fail "$s restart policy is $restart"
done

phase "secrets"
# secrets_of VOLUME: sha256 of each secret file in the volume, read from a
# throwaway container of the local nginx image (the Go images have no shell).
secrets_of() {
  timeout 60 docker run --rm --network none -v "$1:/s:ro" "$NGINX_IMAGE" \
    sh -c 'for f in session_secret service_token; do [ -s /s/$f ] || exit 1; printf "%s " "$(sha256sum < /s/$f | cut -c1-64)"; done'
}
first=$(secrets_of "${project}_secrets") || fail "the secrets volume lacks session_secret or service_token"
say "generated secrets (sha256): $first"
timeout 60 "${compose[@]}" run --rm --no-deps secrets >/dev/null 2>&1 || fail "running the secrets service again"
[[ $(secrets_of "${project}_secrets") == "$first" ]] || fail "the secrets changed when the secrets service ran again"
bff_image=$(docker inspect -f '{{.Config.Image}}' "$("${compose[@]}" ps -q bff | head -1)")
fresh=${project}-fresh-secrets
timeout 60 docker run --rm --network none -v "$fresh:/secrets" "$bff_image" -init-secrets /secrets || fail "bff -init-secrets on a fresh volume"
other=$(secrets_of "$fresh"); docker volume rm -f "$fresh" >/dev/null
[[ -n $other && $other != "$first" ]] || fail "two fresh volumes got the same secrets"
say "a fresh volume gets other secrets: $other"
# A published sample secret stops the service at start, with a clear error.
for s in bff backend; do
  var=SERVICE_TOKEN; [[ $s == bff ]] && var=SESSION_SECRET
  sample=exportstream-dev-token; [[ $s == bff ]] && sample=exportstream-demo-secret-change-me-0123456789
  if out=$(timeout 60 "${compose[@]}" run --rm --no-deps -e "${var}_FILE=" -e "$var=$sample" "$s" 2>&1); then
    fail "$s started with the published sample $var"
  fi
  grep -q 'sample value published' <<<"$out" || fail "$s refused the sample $var without saying why: $out"
  say "$s refuses the published sample $var: $(grep -m1 'sample value' <<<"$out" | cut -c1-120)"
done

# follow FILE CODE: the job's SSE stream through nginx into FILE, one
# "<epoch seconds> <line>" per line; returns when the server ends the stream.
follow() {
  timeout 120 curl -sS -N -b "$work/cookies" "$base/api/exports/$2/events" |
    while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$1"
}
# field FILE EXPR: a value of the last event's job, e.g. field f 'j.file.sha256'.
field() {
  grep ' data: ' "$1" | tail -1 | sed 's/^[^ ]* data: //' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log('"$2"')})'
}
create() { # create ROWS DURATION_MS: prints the new job's code
  local out
  out=$(timeout 20 curl -sS -c "$work/cookies" -b "$work/cookies" -w '\n%{http_code}' \
    -H 'Content-Type: application/json' -d "{\"rows\":$1,\"durationMs\":$2}" "$base/api/exports")
  [[ $(tail -1 <<<"$out") == 202 ]] || fail "POST /api/exports: $out"
  head -1 <<<"$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).code))'
}
download_and_verify() { # download_and_verify EVENTS_FILE NAME
  local url sha size got
  url=$(field "$1" 'j.file.url')
  sha=$(field "$1" 'j.file.sha256')
  size=$(field "$1" 'j.file.size')
  timeout 60 curl -sS -f -b "$work/cookies" -o "$work/$2.csv" "$base$url" || fail "GET $url"
  got=$(sha256sum "$work/$2.csv" | cut -d' ' -f1)
  [[ $got == "$sha" ]] || fail "$2: downloaded sha256 $got, event says $sha"
  [[ $(stat -c %s "$work/$2.csv") == "$size" ]] || fail "$2: size differs from the event's"
  say "$2: $url, $size bytes, sha256 $sha matches"
}

phase "an export through nginx"
page=$(timeout 10 curl -sS -f "$base/") || fail "GET / (the demo page)"
grep -qi '<html' <<<"$page" || fail "GET / is not the demo page"
code=$(create 50000 4000)
say "created $code"
follow "$work/events1" "$code"
events=$(grep -c ' data: ' "$work/events1" || true)
status=$(field "$work/events1" 'j.status')
[[ $status == COMPLETED ]] || fail "last event: $status (want COMPLETED)"
((events >= 3)) || fail "only $events events: progress was not streamed"
# A buffering proxy would hand the events over at the end, all at once:
# they must arrive as far apart as the backend made them. Judged from the
# second event on (the first is the snapshot at connect, as old as the
# job's last change), so a late connect on a loaded machine changes
# nothing.
spreads=$(grep ' data: ' "$work/events1" | node -e '
  let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
    const ev = s.trim().split("\n").slice(1).map(l => {
      const [at, , ...data] = l.split(" ");
      return { at: Number(at), made: Date.parse(JSON.parse(data.join(" ")).updatedAt) / 1000 };
    });
    const a = ev[0], b = ev[ev.length - 1];
    console.log((b.at - a.at).toFixed(2), (b.made - a.made).toFixed(2));
  });')
read -r received made <<<"$spreads"
say "$events events, the live ones received over $received s, made over $made s; last COMPLETED"
node -e "process.exit($made >= 0.5 && $received >= $made / 2 ? 0 : 1)" ||
  fail "events made over $made s came within $received s: nginx buffered the stream"
download_and_verify "$work/events1" first

phase "JSON logs"
for s in backend bff client; do # redis logs its own text format
  logs=$(timeout 20 "${compose[@]}" logs --no-color --no-log-prefix "$s") || fail "docker compose logs $s"
  line=$(grep -m1 '^{' <<<"$logs")
  [[ -n $line ]] || fail "$s logged no JSON line"
  say "$s: ${line:0:110}…"
done
grep -q "\"uri\":\"/api/exports/$code/events\"" <<<"$logs" || fail "nginx's JSON access log lacks the events request"

integration_profile() {
  phase "integration profile"
  # The container reaches nginx by service name, as the suite does.
  timeout 300 "${compose[@]}" --profile test run --rm --no-deps integration \
    node -e 'fetch(process.env.EXPORTSTREAM_BFF_URL + "/healthz").then(r => { console.log("integration container: " + process.env.EXPORTSTREAM_BFF_URL + "/healthz " + r.status); process.exit(r.ok ? 0 : 1) }, e => { console.error(e); process.exit(1) })' \
    >"$work/integration.log" 2>&1 || { tail -30 "$work/integration.log" >&2; fail "the integration container cannot reach the stack"; }
  grep 'integration container' "$work/integration.log" | sed 's/^/  /'
  if grep -rqs EXPORTSTREAM_BFF_URL client/test/; then
    timeout 300 "${compose[@]}" --profile test run --rm integration >"$work/integration.log" 2>&1 ||
      { tail -60 "$work/integration.log" >&2; fail "the integration suite failed against the stack"; }
    tail -6 "$work/integration.log" | sed 's/^/  /'
  else
    say "the client's integration suite does not read EXPORTSTREAM_BFF_URL yet: wired, not run"
  fi

}

if [[ ${COMPOSE_SCALE:-} != 1 ]]; then
phase "backend restart in the middle of an export"
code=$(create 200000 10000)
say "created $code; subscribing"
follow "$work/events2" "$code" &
follower=$!
for _ in $(seq 100); do
  p=$(field "$work/events2" 'j.progress' 2>/dev/null || true)
  [[ -n $p && $p -ge 10 ]] && break
  sleep 0.1
done
[[ -n $p && $p -ge 10 && $p -lt 100 ]] || fail "the export did not get under way (progress ${p:-none})"
say "at $p %: docker compose restart backend"
timeout 60 "${compose[@]}" restart backend >/dev/null 2>&1 || fail "docker compose restart backend"
say "backend restarted; waiting for the subscriber's stream to end"
wait "$follower" || fail "the subscriber's stream broke (curl status $?)"
status=$(field "$work/events2" 'j.status')
[[ $status == COMPLETED ]] || fail "after the restart the last event is $status (want COMPLETED): $(grep ' data: ' "$work/events2" | tail -1 | cut -c1-300)"
say "$(grep -c ' data: ' "$work/events2") events on one connection, last COMPLETED"
download_and_verify "$work/events2" resumed
ps_out=$(timeout 30 "${compose[@]}" ps --format '{{.Service}} {{.Health}}')
grep -q '^backend \(healthy\|starting\)$' <<<"$ps_out" || fail "backend after restart: $ps_out"
[[ $(secrets_of "${project}_secrets") == "$first" ]] || fail "the secrets changed across the restart"

integration_profile
else
integration_profile
# nginx's access log names the BFF of every request: both served the suite.
bffs=$(timeout 20 "${compose[@]}" logs --no-color --no-log-prefix client |
  grep '"uri":"/api/' | grep -oE '"upstream":"[^"]*"' | grep -oE '[0-9a-f.:]+:8080' | sort | uniq -c)
echo "$bffs" | sed 's/^/  requests per BFF: /'
(($(wc -l <<<"$bffs") == 2)) || fail "the /api/ requests did not alternate between the two BFFs"

phase "kill -9 a backend and the subscriber's BFF in the middle of an export"
# metric NAME CONTAINER: a BFF's Prometheus value, read from inside nginx's
# container (the BFFs are not published; their images have no shell).
metric() {
  local ip
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$2")
  timeout 10 docker exec "$("${compose[@]}" ps -q client)" wget -q -O - "http://$ip:8080/metrics" |
    awk -v n="$1" '$1 == n { print $2 }'
}
code=$(create 200000 10000)
say "created $code; subscribing"
follow "$work/events2" "$code" &
follower=$!
for _ in $(seq 100); do
  p=$(field "$work/events2" 'j.progress ?? JSON.stringify(j)' 2>/dev/null || true)
  [[ $p =~ ^[0-9]+$ ]] || [[ -z $p ]] || fail "the stream's last event has no progress: $p"
  [[ -n $p && $p -ge 10 ]] && break
  sleep 0.1
done
[[ -n $p && $p -ge 10 && $p -lt 100 ]] || fail "the export did not get under way (progress ${p:-none})"
doomed_bff=
for id in $("${compose[@]}" ps -q bff); do
  [[ $(metric exportstream_bff_subscribers_active "$id") == 1 ]] && doomed_bff=$id
done
[[ -n $doomed_bff ]] || fail "no BFF has the subscriber's stream"
# sed reads every line: with head, compose could write its second line to a
# closed pipe and exit 255, which pipefail and set -e made this script's
# silent exit (a CI run failed so).
doomed_backend=$("${compose[@]}" ps -q backend | sed -n 1p)
say "at $p %: docker kill -s KILL a backend and the BFF with the stream"
docker kill -s KILL "$doomed_backend" "$doomed_bff" >/dev/null || fail "docker kill"
# The stream ends with its BFF: curl fails, or exits 0 when nginx reads the
# end of the BFF's close-delimited event stream as the end of the response
# (EventSource reconnects either way). What counts: it ended, and before
# the export's terminal event.
wait "$follower" || true
status=$(field "$work/events2" 'j.status')
[[ $status == IN_PROGRESS ]] || fail "the stream ended at $status, not mid-export"
last=$(grep ' id: ' "$work/events2" | tail -1 | sed 's/^[^ ]* id: //')
[[ -n $last ]] || fail "no event id before the kill"
say "the stream ended with its BFF after id $last ($status); reconnecting through nginx with Last-Event-ID: $last"
timeout 120 curl -sS -N -b "$work/cookies" -H "Last-Event-ID: $last" "$base/api/exports/$code/events" |
  while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$work/events3" ||
  fail "the resumed stream broke (curl status $?)"
cat "$work/events2" "$work/events3" >"$work/events"
# Ids strictly increasing across both connections; every one the job's seq;
# exactly one terminal event, the last, COMPLETED.
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n");
  let id, prev = 0, terminal = 0, last, n = 0;
  for (const l of lines) {
    const m = /^\S+ (id|data): (.*)$/.exec(l);
    if (!m) continue;
    if (m[1] === "id") { id = Number(m[2]); continue; }
    const j = JSON.parse(m[2]);
    if (j.seq !== id) throw new Error(`event id ${id} carries seq ${j.seq}`);
    if (j.seq <= prev) throw new Error(`seq ${j.seq} after ${prev}`);
    prev = j.seq; n++; last = j;
    if (["COMPLETED", "FAILED", "CANCELLED"].includes(j.status)) terminal++;
  }
  if (terminal !== 1 || last.status !== "COMPLETED") throw new Error(`${terminal} terminal events, last ${last && last.status}`);
  console.log(`compose-test: ${n} events over two connections, seqs strictly increasing up to ${prev}, one COMPLETED`);
' "$work/events" || fail "the events across the BFF kill are wrong"
download_and_verify "$work/events" resumed
fi

phase "down -v"
timeout 120 "${compose[@]}" --profile test down -v --remove-orphans -t 20 >/dev/null 2>&1 || fail "docker compose down -v"
[[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$project") ]] || fail "containers left after down"
[[ -z $(docker volume ls -q --filter "label=com.docker.compose.project=$project") ]] || fail "volumes left after down -v"
project=
say "-- $phase_name: $((SECONDS - phase_start)) s"
phase_name=
say "PASS: docker compose $compose_v, stack on 127.0.0.1:$port"
