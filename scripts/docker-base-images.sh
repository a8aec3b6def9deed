#!/usr/bin/env bash
# Makes the base images the Dockerfiles build FROM, out of what this machine
# already has, for machines with a Docker engine but no image registry (CI).
# The Dockerfiles stay the ones users build; only their base-image build
# arguments change. Prints, on stdout, the arguments to pass:
#
#   GO_IMAGE=exportstream-local/go:…      golang:1.26 stand-in: this machine's Go
#                                         toolchain, busybox, and a module cache
#                                         prepared here (GOPROXY=off inside)
#   NODE_IMAGE=exportstream-local/node:…  node:20 stand-in: `which node`, npm, the
#                                         libraries ldd lists, busybox, and an npm
#                                         cache prepared here (offline inside)
#   NGINX_IMAGE=exportstream-local/nginx:… nginx stand-in: Debian's nginx package
#                                         plus its libraries, busybox (wget for
#                                         the healthcheck, as in nginx:alpine)
#   REDIS_IMAGE=exportstream-local/redis:… redis:7 stand-in (docker-compose.scale.yml):
#                                         Debian's redis-server and redis-cli plus
#                                         their libraries, busybox, user redis
#                                         (999) owning /data, as the official image
#
# Images are tagged with a hash of what went in and reused while it is the
# same. Work files live in .tools/docker-base/ (git-ignored). Needs docker,
# go, node/npm; on Debian, apt-get download for busybox-static, nginx and
# redis-tools (run as root: /data of the redis image is owned by uid 999).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/.tools/docker-base
mkdir -p "$work"

say() { echo "docker-base-images: $*" >&2; }

# busybox: a static one, as /bin/busybox plus one symlink per applet.
busybox_bin() {
  local bb
  for bb in "$work/busybox" /bin/busybox /usr/bin/busybox; do
    if [[ -x $bb ]] && ! ldd "$bb" >/dev/null 2>&1; then echo "$bb"; return; fi # static: ldd fails
  done
  say "fetching busybox-static with apt-get download"
  local d
  d=$(mktemp -d)
  (cd "$d" && apt-get download -qq busybox-static 2>/dev/null && dpkg-deb -x busybox-static_*.deb x)
  cp "$d/x/bin/busybox" "$work/busybox"
  rm -rf "$d"
  echo "$work/busybox"
}

# stage_busybox DIR: /bin/busybox and its applets, /usr/bin/env, /tmp, /etc/passwd.
stage_busybox() {
  local dir=$1 bb applet
  bb=$(busybox_bin)
  mkdir -p "$dir/bin" "$dir/usr/bin" "$dir/tmp" "$dir/etc" "$dir/root"
  chmod 1777 "$dir/tmp"
  cp "$bb" "$dir/bin/busybox"
  for applet in $("$bb" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$dir/bin/$applet"
  done
  ln -sf /bin/busybox "$dir/usr/bin/env"
  printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnginx:x:101:\nnonroot:x:65532:\n' >"$dir/etc/group"
}

# stage_libs DIR BINARY…: the shared libraries ldd lists for each binary,
# copied (symlinks resolved) to the paths ldd names, the loader included.
stage_libs() {
  local dir=$1 lib
  shift
  if ldd "$@" | grep -q 'not found'; then
    say "missing libraries: $(ldd "$@" | grep 'not found' | sort -u | tr -s ' \t' ' ')"
    return 1
  fi
  for lib in $(ldd "$@" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
}

# stage_glibc DIR NAME…: glibc libraries by soname, from the loader's cache.
stage_glibc() {
  local dir=$1 name path
  shift
  for name in "$@"; do
    # awk reads to the end: exiting at the match would let ldconfig die of
    # SIGPIPE on its next write, which pipefail turns into a failure.
    path=$(ldconfig -p | awk -v n="$name" '!found && $1 == n && /x86-64|x86_64|AArch64/ { print $NF; found = 1 }')
    [[ -n $path ]] || continue
    mkdir -p "$dir$(dirname "$path")"
    cp -L "$path" "$dir$path"
  done
}

exists() { docker image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-12; }

# --- Go: toolchain + busybox + module cache -----------------------------------
goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
go_tag="exportstream-local/go:${gover#go}-$(cat backend/go.mod backend/go.sum bff/go.mod bff/go.sum | hash_of)"
if exists "$go_tag"; then
  say "$go_tag is there"
else
  say "building $go_tag (module cache from go mod download; $goroot)"
  modcache=$work/gomodcache
  # The host's own module cache first, then the network only for what it lacks.
  hostcache=$(go env GOMODCACHE)/cache/download
  export GOMODCACHE=$modcache GOFLAGS=-modcacherw GOPROXY="file://$hostcache,$(go env GOPROXY)"
  # The Dockerfiles build each module on its own (GOWORK=off).
  (cd backend && GOWORK=off go mod download) && (cd bff && GOWORK=off go mod download)
  unset GOMODCACHE GOFLAGS GOPROXY
  stage=$(mktemp -d)
  stage_busybox "$stage"
  mkdir -p "$stage/go/bin" "$stage/go/src"
  b=$(basename "$goroot")
  # One stream: the staged files, the toolchain as /usr/local/go, the module
  # cache as /go/pkg/mod (the layout of the official golang image).
  tar -c --exclude="$b/test" --exclude="$b/api" --exclude="$b/doc" --exclude=gomodcache/cache/vcs \
    --transform "s,^$b/,usr/local/go/,S;s,^$b\$,usr/local/go,S;s,^gomodcache,go/pkg/mod,S" \
    -C "$stage" . -C "$(dirname "$goroot")" "$b" -C "$work" gomodcache |
    docker import \
      --change 'ENV PATH=/go/bin:/usr/local/go/bin:/bin:/usr/bin' \
      --change 'ENV GOPATH=/go HOME=/root GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0' \
      --change 'WORKDIR /go' \
      --change 'CMD ["/bin/sh"]' \
      - "$go_tag" >/dev/null
  rm -rf "$stage"
fi

# --- Node: node + npm + libs + busybox + npm cache -----------------------------
node=$(readlink -f "$(command -v node)")
nodever=$(node --version)
npmroot=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")") # …/node_modules/npm
node_tag="exportstream-local/node:${nodever#v}-$( (cat client/package-lock.json; echo glibc-v2) | hash_of)"
if exists "$node_tag"; then
  say "$node_tag is there"
else
  say "building $node_tag ($node, npm from $npmroot, npm cache from npm ci)"
  cache=$work/npm-cache
  prep=$(mktemp -d)
  cp client/package.json client/package-lock.json "$prep/"
  (cd "$prep" && npm ci --cache "$cache" --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$prep"
  stage=$(mktemp -d)
  stage_busybox "$stage"
  mkdir -p "$stage/usr/local/bin" "$stage/usr/local/lib/node_modules"
  cp "$node" "$stage/usr/local/bin/node"
  strip "$stage/usr/local/bin/node" 2>/dev/null || true
  stage_libs "$stage" "$node"
  # Native add-ons in node_modules (rollup's, under vitest) need more of glibc
  # than node itself links: the official image has all of it.
  stage_glibc "$stage" librt.so.1 libdl.so.2 libpthread.so.0 libm.so.6 libresolv.so.2 libutil.so.1
  cp -a "$npmroot" "$stage/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$stage/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$stage/usr/local/bin/npx"
  mkdir -p "$stage/npm-cache"
  cp -a "$cache/." "$stage/npm-cache/"
  tar -c -C "$stage" . | docker import \
    --change 'ENV PATH=/usr/local/bin:/bin:/usr/bin HOME=/root' \
    --change 'ENV npm_config_cache=/npm-cache npm_config_offline=true npm_config_update_notifier=false' \
    --change 'CMD ["node"]' \
    - "$node_tag" >/dev/null
  rm -rf "$stage"
fi

# --- nginx: Debian's package + libs + busybox ----------------------------------
debs=$work/debs
mkdir -p "$debs"
if ! ls "$debs"/nginx_*.deb >/dev/null 2>&1 || ! ls "$debs"/nginx-common_*.deb >/dev/null 2>&1; then
  say "fetching nginx with apt-get download"
  (cd "$debs" && rm -f nginx*.deb && apt-get download -qq nginx nginx-common 2>/dev/null)
fi
nginx_tag="exportstream-local/nginx:$(cd "$debs" && ls nginx_*.deb nginx-common_*.deb | hash_of)"
if exists "$nginx_tag"; then
  say "$nginx_tag is there"
else
  say "building $nginx_tag ($(cd "$debs" && ls nginx_*.deb))"
  x=$(mktemp -d)
  for deb in "$debs"/nginx_*.deb "$debs"/nginx-common_*.deb; do dpkg-deb -x "$deb" "$x"; done
  stage=$(mktemp -d)
  stage_busybox "$stage"
  mkdir -p "$stage/usr/sbin" "$stage/etc/nginx/conf.d" "$stage/usr/share/nginx/html" \
    "$stage/var/log/nginx" "$stage/var/lib/nginx" "$stage/var/cache/nginx" "$stage/run"
  cp "$x/usr/sbin/nginx" "$stage/usr/sbin/nginx"
  stage_libs "$stage" "$x/usr/sbin/nginx"
  cp "$x/etc/nginx/mime.types" "$x/etc/nginx/nginx.conf" "$stage/etc/nginx/"
  ln -s /dev/stdout "$stage/var/log/nginx/access.log" # as the official image does
  ln -s /dev/stderr "$stage/var/log/nginx/error.log"
  rm -rf "$x"
  tar -c -C "$stage" . | docker import \
    --change 'ENV PATH=/usr/sbin:/bin:/usr/bin' \
    --change 'EXPOSE 80' \
    --change 'CMD ["nginx", "-g", "daemon off;"]' \
    - "$nginx_tag" >/dev/null
  rm -rf "$stage"
fi

# --- Redis: Debian's redis-tools (redis-server is its redis-check-rdb) -------
if ! ls "$debs"/redis-tools_*.deb >/dev/null 2>&1; then
  say "fetching redis-tools with apt-get download"
  (cd "$debs" && apt-get download -qq redis-tools 2>/dev/null)
fi
redis_tag="exportstream-local/redis:$( (cd "$debs" && ls redis-tools_*.deb; echo v1) | hash_of)"
if exists "$redis_tag"; then
  say "$redis_tag is there"
else
  say "building $redis_tag ($(cd "$debs" && ls redis-tools_*.deb))"
  x=$(mktemp -d)
  dpkg-deb -x "$debs"/redis-tools_*.deb "$x"
  stage=$(mktemp -d)
  stage_busybox "$stage"
  echo 'redis:x:999:999:redis:/data:/bin/false' >>"$stage/etc/passwd"
  echo 'redis:x:999:' >>"$stage/etc/group"
  mkdir -p "$stage/usr/local/bin" "$stage/data"
  # The server is redis-check-rdb started under the name redis-server (as
  # Debian's symlink does); the official image has both on the PATH too.
  cp "$x/usr/bin/redis-check-rdb" "$stage/usr/local/bin/redis-server"
  cp "$x/usr/bin/redis-cli" "$stage/usr/local/bin/redis-cli"
  stage_libs "$stage" "$x/usr/bin/redis-check-rdb" "$x/usr/bin/redis-cli"
  chown 999:999 "$stage/data"
  rm -rf "$x"
  tar -c -C "$stage" . | docker import \
    --change 'ENV PATH=/usr/local/bin:/bin:/usr/bin' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server"]' \
    - "$redis_tag" >/dev/null
  rm -rf "$stage"
fi

echo "GO_IMAGE=$go_tag"
echo "NODE_IMAGE=$node_tag"
echo "NGINX_IMAGE=$nginx_tag"
echo "REDIS_IMAGE=$redis_tag"
