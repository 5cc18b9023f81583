# Fraise. `make run` starts the whole stack locally; `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := bin/fraise
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages whose concurrency the race detector checks in `make test`.
RACE_PKGS := ./core/... ./envoy/... ./extauthz/... ./adapters/... ./cmd/...

.PHONY: all run test lint unit race e2e audit bench generate build deps services stop clean

all: build

deps:
	@deploy/dev/deps.sh
	@$(GO) mod download

build:
	$(GO) build -o $(BIN) ./cmd/fraise

## run: the whole stack on embedded defaults, with demo data, then a ready-to-paste request.
run: deps build
	$(BIN) certs
	deploy/dev/services.sh start
	$(BIN) migrate --create-db --demo
	$(BIN) dev

services:
	deploy/dev/services.sh start

stop:
	deploy/dev/services.sh stop

## test: lint, unit, integration and end-to-end tests, and the policy tests.
test: deps lint build
	$(BIN) policy check
	$(BIN) policy test
	$(GO) test -count=1 -timeout 10m ./...
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -short ./...

e2e:
	$(GO) test -count=1 -v ./test/...

## audit: the GraphQL-over-HTTP conformance suite (npm graphql-http) against the core.
audit:
	$(GO) test -count=1 -v -run TestServerAudits ./test/graphqlhttp/

## bench: Go benchmarks and load runs, printed as a table, then the ingress's
## figures against its targets beside PostGraphile v4's from the same run.
## The table prints even when a benchmark fails (test/bench fails clearly when
## the engine cannot run an operation); make still exits non-zero then.
## deps: test/bench runs real Envoy (`fraise dev`) and PostGraphile on Node.js.
## -p 1: one package at a time, so no load run competes with another for the cores.
bench: deps build
	@status=0; $(GO) test -p 1 -run '^$$' -bench . -benchmem -count 1 -timeout 60m ./... | tee bin/bench.txt || status=$$?; \
	deploy/dev/benchtable.sh bin/bench.txt; exit $$status

## generate: regenerate checked-in generated files (deploy/envoy's static and xDS Envoy bootstraps, and the Kubernetes copy).
generate: build
	$(BIN) envoy bootstrap --config deploy/envoy/fraise.toml --dir deploy/envoy
	# kustomize loads files only from inside its base: keep its copy in step.
	cp deploy/envoy/bootstrap-xds.yaml deploy/k8s/envoy-bootstrap.yaml

clean:
	rm -rf bin
