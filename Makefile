# exportstream — the front door. `make demo` to try it, `make test` to check it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO_MODULES := backend bff bench chaos e2e internal scripts/vulndb
TOOLS      := $(CURDIR)/.tools/bin
GOLANGCI   := $(TOOLS)/golangci-lint
GOLANGCI_VERSION := v2.15.0
GOVULNCHECK := $(TOOLS)/govulncheck
GOVULNCHECK_VERSION := v1.9.0
# The Go vulnerability database, built from the module golang.org/x/vulndb at
# this version (its date is the database's): bump it to take newer entries.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB := $(CURDIR)/.tools/vulndb/$(VULNDB_VERSION)

FUZZTIME ?= 30s
SLOW_FUZZTIME ?= $(FUZZTIME)

.PHONY: check docs chaos chaos-short vulncheck soak soak-short bench bench-full bench-smoke screenshot fuzz fuzz-short help build build-go build-client demo test test-go test-client check-compose test-compose test-compose-scale lint deps-test up down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: build-go build-client ## build the Go binaries (bin/) and the client + demo page (client/dist)

build-go:
	CGO_ENABLED=0 go build -trimpath -o bin/ ./backend/cmd/backend ./bff/cmd/bff

client/node_modules/.package-lock.json: client/package-lock.json
	cd client && npm ci --no-audit --no-fund

build-client: client/node_modules/.package-lock.json
	cd client && npm run build

demo: build ## run backend + BFF natively and serve the demo on http://localhost:8080
	@scripts/demo.sh

deps-test: ## install what the tests need (npm packages; Debian packages when root)
	@scripts/install-test-deps.sh

test: deps-test build lint vulncheck test-go fuzz-short bench-smoke soak-short chaos-short test-client check-compose test-compose test-compose-scale ## run every test (Go -race, TypeScript, browser, compose)

# make check: every module's own tests (not the cross-binary ones, not
# those marked testenv.Slow) beside the TypeScript unit tests.
check: client/node_modules/.package-lock.json ## the fast inner loop (< 1 min): Go unit tests (-short) and TypeScript unit tests; make test is the full run
	@set -e; go test -short -count=1 $$(go list $(addprefix ./,$(addsuffix /...,$(GO_MODULES))) | grep -v -e '/cmd/' -e '/e2e') & gopid=$$!; \
	(cd client && npm run test:unit); wait $$gopid

test-go: ## Go tests with the race detector, every module (e2e: the real binaries)
	go test -race -count=1 $(addprefix ./,$(addsuffix /...,$(GO_MODULES)))

test-client: build ## TypeScript unit, integration (real binaries; again on Redis + 2 backends + 2 BFFs) and browser (Chromium) tests
	cd client && EXPORTSTREAM_BIN_DIR=$(CURDIR)/bin npm test

docs: ## rewrite docs/configuration.md from the services' -help
	cd backend && UPDATE_DOCS=1 go test -count=1 -run '^TestConfigurationDocIsTheHelpOutput$$' ./internal/config/
	cd bff && UPDATE_DOCS=1 go test -count=1 -run '^TestConfigurationDocIsTheHelpOutput$$' ./internal/config/

screenshot: build ## refresh docs/demo.png from the browser test
	cd client && UPDATE_SCREENSHOT=1 EXPORTSTREAM_BIN_DIR=$(CURDIR)/bin npx vitest run --project browser

check-compose: ## validate docker-compose.yml and the scale override
	@scripts/check-compose.sh

BACKEND_FUZZ := FuzzDecodeRequest FuzzContentDisposition FuzzParseLastEventID

fuzz: ## run each fuzz target for FUZZTIME (default 30s); FuzzUpstreamBytes (a hub per input: slow) for SLOW_FUZZTIME
	cd backend && for f in $(BACKEND_FUZZ); do go test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) ./internal/httpapi/ || exit 1; done
	cd internal && go test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./envelope/
	cd bff && go test -run='^$$' -fuzz='^FuzzUpstreamBytes$$' -fuzztime=$(SLOW_FUZZTIME) ./internal/relay/
	cd bff && go test -run='^$$' -fuzz='^FuzzScanEnvelope$$' -fuzztime=$(FUZZTIME) ./internal/relay/
	cd bff && go test -run='^$$' -fuzz='^FuzzAppendEvent$$' -fuzztime=$(FUZZTIME) ./internal/stream/
	cd bff && go test -run='^$$' -fuzz='^FuzzClientAddress$$' -fuzztime=$(FUZZTIME) ./internal/httpapi/

# make test's pass counts executions, not seconds: a -fuzztime deadline can
# end Go 1.26's fuzzing with a spurious "context deadline exceeded" on a
# loaded machine (go.dev/issue/75804, fixed in Go 1.27); a count has none.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x SLOW_FUZZTIME=300x

DEADCODE := $(TOOLS)/deadcode
DEADCODE_VERSION := v0.52.0

$(DEADCODE):
	GOBIN=$(TOOLS) go install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)

$(GOLANGCI):
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

lint: $(GOLANGCI) $(DEADCODE) client/node_modules/.package-lock.json ## gofmt, go vet, golangci-lint, deadcode, GOWORK=off + CGO_ENABLED=0 builds, tsc, knip
	@test -z "$$(gofmt -l $(GO_MODULES))" || { echo "gofmt needed:"; gofmt -l $(GO_MODULES); exit 1; }
	go vet $(addprefix ./,$(addsuffix /...,$(GO_MODULES)))
	@dead=$$($(DEADCODE) -test $(addprefix ./,$(addsuffix /...,$(GO_MODULES)))) && test -z "$$dead" || { echo "unreachable functions (deadcode):"; echo "$$dead"; exit 1; }
	@for m in $(GO_MODULES); do (cd $$m && $(GOLANGCI) run ./... && GOWORK=off CGO_ENABLED=0 go build -o /dev/null ./...) || exit 1; done
	cd client && npm run typecheck
	cd client && npm run knip

$(GOVULNCHECK):
	GOBIN=$(TOOLS) go install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB)/index/db.json: scripts/vulndb/gen.go
	go run ./scripts/vulndb gen -version $(VULNDB_VERSION) -out $(VULNDB)

vulncheck: $(GOVULNCHECK) $(VULNDB)/index/db.json ## govulncheck on every Go module against the database built offline (RELIABILITY.md); npm audit --omit=dev
	GOVULNCHECK=$(GOVULNCHECK) VULNDB_DIR=$(VULNDB) go test -count=1 ./scripts/vulndb/
	go run ./scripts/vulndb check -govulncheck $(GOVULNCHECK) -db $(VULNDB) -accept scripts/vulndb/accepted.txt $(GO_MODULES)
	cd client && npm audit --omit=dev

# Mutation testing (RELIABILITY.md, "Mutation testing"): gremlins mutates
# each core package and runs that package's tests against every mutant, one
# package and one mutant at a time (the machine is shared), without -race,
# -count=1 (a test that reads Redis or the clock must not come from the cache).
# Long (about an hour in all), so not in `make test`. One package:
# make mutation MUTATION_PKGS=bff:internal/relay
GREMLINS := $(TOOLS)/gremlins
GREMLINS_VERSION := v0.6.0
MUTATION_PKGS ?= bff:internal/relay bff:internal/session bff:internal/stream backend:internal/store backend:internal/worker
MUTATION_OUT ?= $(CURDIR)/.tools/mutation
# A mutant's tests may take this many times the package's first (covered) test run.
MUTATION_TIMEOUT_COEFFICIENT ?= 5
# gremlins works (and the tests make their temporary dirs) under this.
MUTATION_TMP = $(MUTATION_OUT)/tmp
# A mutant that crashes a test binary skips its cleanups: the store's tests
# then leave their tmpfs mounts (root only) in MUTATION_TMP, which gremlins
# cannot remove.
MUTATION_UNMOUNT = awk 'index($$2, "$(MUTATION_TMP)/") == 1 {print $$2}' /proc/mounts | xargs -r umount -l

.PHONY: mutation

$(GREMLINS):
	GOBIN=$(TOOLS) go install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)

mutation: $(GREMLINS) ## mutation testing of the core Go packages (gremlins; long, not in make test): JSON reports and logs in MUTATION_OUT
	@command -v redis-server >/dev/null || { echo "make mutation: redis-server is needed (the store and worker tests run on it)"; exit 1; }
	@mkdir -p $(MUTATION_OUT) $(MUTATION_TMP)
	@set -o pipefail; for p in $(MUTATION_PKGS); do \
		mod=$${p%%:*}; dir=$${p#*:}; name=$$(basename $$dir); \
		echo "== $$mod/$$dir -> $(MUTATION_OUT)/$$name.json"; \
		(cd $$mod && CI=true GOWORK=off GOFLAGS=-count=1 TMPDIR=$(MUTATION_TMP) $(GREMLINS) unleash --workers 1 \
			--timeout-coefficient $(MUTATION_TIMEOUT_COEFFICIENT) \
			-o $(MUTATION_OUT)/$$name.json ./$$dir) | tee $(MUTATION_OUT)/$$name.log || exit 1; \
		$(MUTATION_UNMOUNT); rm -rf $(MUTATION_TMP)/gremlins-*; \
	done

SOAK_DURATION ?= 10m
SOAK_TIMEOUT  ?= 30m

soak: ## the soak (RELIABILITY.md): real backend + BFF under random creates, subscribes, cancels, downloads and disconnects for SOAK_DURATION (default 10m); fails on growth or a job left unfinished
	set -o pipefail; cd e2e && SOAK_DURATION=$(SOAK_DURATION) go test -count=1 -run='^TestSoak$$' -timeout=$(SOAK_TIMEOUT) -v . | grep -v '^{"time'

soak-short: ## the soak for 60 s
	@$(MAKE) --no-print-directory soak SOAK_DURATION=60s SOAK_TIMEOUT=5m

SEEDS          ?= 1-100
CHAOS_DURATION ?= 30s
CHAOS_RESULTS  := chaos/results

chaos: build-go ## the fault campaign (chaos/README.md): SEEDS (default 1-100; odd on Redis + 3 backends + 2 BFFs, even on 1 backend + 1 BFF), CHAOS_DURATION of faults each; appends to chaos/results/results.jsonl (seeds passed there are skipped) and writes chaos/results/SUMMARY.md
	go run ./chaos -seeds $(SEEDS) -duration $(CHAOS_DURATION) -bin-dir $(CURDIR)/bin -results $(CHAOS_RESULTS)/results.jsonl -summary $(CHAOS_RESULTS)/SUMMARY.md

chaos-short: build-go ## two fixed seeds of the campaign, 20 s of faults each, one per topology (~1.5 min)
	go run ./chaos -seeds 1-2 -duration 20s -bin-dir $(CURDIR)/bin -shrink-runs 0

bench/baselines/node_modules/.package-lock.json: bench/baselines/package-lock.json
	cd bench/baselines && npm ci --no-audit --no-fund

BENCH_DEPS := build-go bench/baselines/node_modules/.package-lock.json
BENCH_RUNS ?= 3

bench: $(BENCH_DEPS) ## short benchmarks, one run (~5 min): bench/results/<date>.json and latency-cdf.svg (see BENCHMARKS.md)
	go run ./bench -size short -out bench/results

bench-full: $(BENCH_DEPS) ## the full sizes, 3 runs with the variants' order alternated (19,900 idle users in one BFF, 50,000 in three, spread 1,000×10/s and 10,000×1/s, 10,000 fan-out, 1/2/4 replicas) and the Go micro-benchmarks ×6
	go run ./bench -size full -runs $(BENCH_RUNS) -out bench/results
	cd bff && go test -run='^$$' -bench=. -benchmem -count=6 ./internal/relay/ ./internal/stream/ | tee ../bench/results/relay-microbench.txt
	cd backend && go test -run='^$$' -bench=. -benchmem -count=6 ./internal/httpapi/ ./internal/store/ | tee ../bench/results/backend-microbench.txt

bench-smoke: $(BENCH_DEPS) ## the harness at tiny sizes (seconds) and one pass of every Go benchmark, so neither rots
	@out=$$(mktemp -d) && go run ./bench -size smoke -q -out $$out && rm -rf $$out
	cd bff && go test -run='^$$' -bench=. -benchtime=1x ./internal/relay/ ./internal/stream/ >/dev/null
	cd backend && go test -run='^$$' -bench=. -benchtime=1x ./internal/httpapi/ ./internal/store/ >/dev/null

test-compose: ## docker compose for real: build, up --wait, an export through nginx, a backend restart, down -v (root on Debian: installs Docker)
	@scripts/compose-test.sh

test-compose-scale: ## the same on docker-compose.scale.yml: Redis, 2 backends, 2 BFFs behind nginx; kill -9 a backend and a BFF mid-export
	@COMPOSE_SCALE=1 scripts/compose-test.sh

up: ## docker compose up --build --wait: the demo on http://localhost:3000 (needs Docker)
	docker compose up --build --wait
	@echo "exportstream: http://localhost:$${CLIENT_PORT:-3000}"

down: ## docker compose down (exports stay in the backend-data volume; add -v to delete them)
	docker compose down

clean:
	rm -rf bin client/dist .data
