# Fraise. `make run` starts the whole stack locally; `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
# The Go toolchain is go.mod's `toolchain` line (the go command fetches it
# from the module proxy once): it carries the standard library's security
# fixes that govulncheck holds the build to, even where the machine's Go
# is older and set to GOTOOLCHAIN=local.
export GOTOOLCHAIN := auto
BIN := bin/fraise
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages whose concurrency the race detector checks in `make test`.
RACE_PKGS := ./core/... ./envoy/... ./extauthz/... ./adapters/... ./cmd/... ./internal/... ./test/observers/... ./test/loadgen/...
# The packages of RACE_PKGS run once, under -race, not twice: RACE_RE takes
# them out of the ordinary pass, and RACE_SKIPPED are the tests that skip
# under -race (race_on_test.go) and run in the ordinary pass instead
# (deploy's TestRaceSkippedTestsRunInTheOrdinaryPass keeps the list whole).
RACE_RE := /fraise/(core|envoy|extauthz|adapters|cmd|internal|test/observers|test/loadgen)(/|$$)
RACE_SKIPPED := TestShadowLimitCountsWithoutRefusing|TestTierChangesTakeEffect|TestRateLimitFollowsConfig

.PHONY: all run test lint unit race e2e audit bench generate build deps console services stop clean vulncheck fuzz drill observability

all: build

deps:
	@deploy/dev/deps.sh
	@deploy/dev/progress.sh "deps: the Go toolchain go.mod names and the Go modules (the first time: a minute or two)" $(GO) mod download

## build: bin/fraise. The first build on a fresh machine compiles every
## dependency: about five minutes on two cores; later builds take seconds.
build:
	@deploy/dev/progress.sh "build: go build -o $(BIN) ./cmd/fraise" $(GO) build -o $(BIN) ./cmd/fraise

## console: the console's web application (adapters/console/web/dist, which the
## binary embeds, so it is committed) from the npm packages package-lock.json
## pins: npm ci, then esbuild (build.mjs). A test fails with "run make console"
## when dist/ is older than its sources.
console:
	@deploy/dev/progress.sh "console: npm ci in adapters/console/web (package-lock.json)" \
		npm ci --prefix adapters/console/web --no-audit --no-fund --loglevel=error
	@deploy/dev/progress.sh "console: esbuild into adapters/console/web/dist" node adapters/console/web/build.mjs
	@sha256sum adapters/console/web/package-lock.json | cut -d' ' -f1 > adapters/console/web/node_modules/.fraise-lock.sha256

## run: the whole stack on embedded defaults, with demo data (GraphQL, Flight datasets, an observer
## rule and its receiver), then a command to paste for each.
## `make run TRACING=jaeger` also starts Jaeger (deploy/dev/jaeger.sh), sends it every
## span, and prints the link to the sample request's trace (docs/tracing.md).
TRACING ?=
ifeq ($(TRACING),jaeger)
RUN_ENV := FRAISE_TELEMETRY_OTLP_ENDPOINT=127.0.0.1:4317 FRAISE_TELEMETRY_SAMPLE_RATIO=1 \
	FRAISE_TELEMETRY_TRACE_URL='http://127.0.0.1:16686/trace/{trace_id}'
endif
run: deps build
	$(BIN) certs
	deploy/dev/services.sh start
	$(if $(filter jaeger,$(TRACING)),deploy/dev/jaeger.sh start)
	$(BIN) migrate --profile dev --create-db --demo
	$(RUN_ENV) $(BIN) dev --demo

services:
	deploy/dev/services.sh start

stop:
	deploy/dev/services.sh stop
	deploy/dev/jaeger.sh stop

## test: lint, the policy tests, the Prometheus rules and their unit
## tests (promtool, deploy/observability), every Go test (unit, integration against real
## PostgreSQL, Redis and Envoy, end to end through Envoy), the attack suite
## (test/security, docs/security.md), the race detector on concurrent
## packages, govulncheck, every fuzz target for a few seconds, and a check
## that no test left an Envoy running. The attack suite prints one line per
## attack and a total: go test shows a passing package's output only with
## -v, so it runs apart from ./..., its lines kept and shown.
test: deps lint build
	@echo "test: policies"
	$(BIN) policy check
	$(BIN) policy test
	@GO=$(GO) deploy/dev/promtool.sh
	@echo "test: every Go test but the attack suite and the race detector's packages"
	$(GO) test -count=1 -parallel 4 -timeout 15m $$($(GO) list ./... | grep -v '/test/security$$' | grep -v -E '$(RACE_RE)')
	@echo "test: the tests envoyproxy/ratelimit's own race makes skip under -race"
	$(GO) test -count=1 -timeout 5m -run '^($(RACE_SKIPPED))$$' ./adapters/ratelimit ./cmd/fraise/cli
	@echo "test: the attack suite"
	$(GO) test -count=1 -timeout 10m -v ./test/security/ > bin/security.txt || { cat bin/security.txt; exit 1; }
	@grep -E '^(PASS|FAIL) [a-z0-9-]+: |^security: ' bin/security.txt
	@echo "test: the race detector on $(RACE_PKGS)"
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)
	@deploy/dev/vulncheck.sh
	@FUZZTIME=3s GO=$(GO) deploy/dev/fuzz.sh
	@deploy/dev/leftovers.sh

## drill: the restore drill (test/drill, docs/operations.md) with 20,000 rows
## and a minute of traffic: the whole stack on an archiving primary, the primary destroyed,
## the archive restored into a new cluster, the stack started on it; prints
## the RPO and RTO, fails with an RPO above 5 s and checks the observers'
## promises. `make test` runs it with 1,000 rows and six seconds of traffic (and fails only
## above 10 s: the machine is busy with every other test).
drill: deps
	@mkdir -p bin
	@deploy/dev/progress.sh "drill: go test ./test/drill/ with 20,000 rows and a minute of traffic (about three minutes)" \
		bash -c '$(GO) test -count=1 -timeout 15m -v -run TestRestoreDrill ./test/drill/ -args -drill.rows=20000 -drill.traffic=60s -drill.rpo-max=5s > bin/drill.txt' || { cat bin/drill.txt; exit 1; }
	@grep -E '^drill: ' bin/drill.txt

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -short ./...

## observability: promtool (pinned) checks deploy/observability's scrape
## configuration and rules and runs every alert's unit tests.
observability:
	@GO=$(GO) deploy/dev/promtool.sh

## vulncheck: govulncheck (pinned) against a pinned vulnerability database.
vulncheck:
	@deploy/dev/vulncheck.sh

## fuzz: every fuzz target for a minute, its new corpus entries copied into testdata/ to commit.
fuzz:
	@FUZZTIME=$${FUZZTIME:-60s} GO=$(GO) deploy/dev/fuzz.sh --grow

e2e:
	$(GO) test -count=1 -v ./test/...

## audit: the GraphQL-over-HTTP conformance suite (npm graphql-http) against the core.
audit:
	$(GO) test -count=1 -v -run TestServerAudits ./test/graphqlhttp/

## bench: Go benchmarks and load runs, printed as a table, then the ingress's
## figures against its targets beside PostGraphile v4's from the same run,
## and Flight's export (test/e2e BenchmarkExport) beside the ADBC PostgreSQL
## driver, ConnectorX and raw COPY against its targets (docs/flight.md).
## The table prints even when a benchmark fails (test/bench fails clearly when
## the engine cannot run an operation); make still exits non-zero then.
## deps: test/bench runs real Envoy (`fraise dev`) and PostGraphile on Node.js;
## test/e2e's Flight benchmark the Python clients of .tools/python.
## deploy/dev/fraiseql.sh installs FraiseQL (cargo, pinned, cached in .tools),
## or says why not, and BenchmarkVsFraiseQL then skips FraiseQL, saying so.
## -p 1: one package at a time, so no load run competes with another for the cores.
bench: deps build
	@deploy/dev/fraiseql.sh
	@status=0; $(GO) test -p 1 -run '^$$' -bench . -benchmem -count 1 -timeout 60m ./... | tee bin/bench.txt || status=$$?; \
	deploy/dev/benchtable.sh bin/bench.txt; exit $$status

## generate: regenerate checked-in generated files (the Envoy bootstraps of deploy/envoy, deploy/k8s and deploy/systemd).
generate: build
	$(BIN) envoy bootstrap --config deploy/envoy/fraise.toml --dir deploy/envoy
	# Each deployment's Envoy names the certificate paths of its own fraise.toml.
	$(BIN) envoy bootstrap --config deploy/k8s/fraise.toml --xds-out deploy/k8s/envoy-bootstrap.yaml
	$(BIN) envoy bootstrap --config deploy/systemd/fraise.toml --xds-out deploy/systemd/bootstrap-xds.yaml

clean:
	rm -rf bin
