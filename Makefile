# Pizza Joint mesh. `make run` starts everything as local processes; `make test` runs every test.
# Both install or build what they need (MariaDB via apt-get, consul and vault from pinned Go modules).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
STATE_DIR ?= $(CURDIR)/.state
BIN_DIR ?= $(CURDIR)/bin
# The mesh tests start a whole stack per package; give them time on a 2-core machine.
TEST_TIMEOUT ?= 30m
FUZZTIME ?= 30s

.PHONY: help run stop status test deps rotate-db-creds rotate-db-root rotate-secret-id rotate-transit-key \
	rotate-gateway-cert rotate-connect-ca build certs lint fmt fuzz bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

run: ## start the whole stack (MariaDB, Consul, Vault, sidecars, order, gateway) and print where to reach it
	STATE_DIR=$(STATE_DIR) scripts/stack.sh start

stop: ## stop everything `make run` started
	STATE_DIR=$(STATE_DIR) scripts/stack.sh stop

status: ## show which processes of the stack are running
	STATE_DIR=$(STATE_DIR) scripts/stack.sh status

deps: ## install or build what the tests need: mariadb-server, jq, curl, consul, vault
	@scripts/tools.sh ensure mariadb >/dev/null
	@scripts/tools.sh ensure jq >/dev/null
	@scripts/tools.sh ensure curl >/dev/null
	@scripts/tools.sh ensure consul >/dev/null
	@scripts/tools.sh ensure vault >/dev/null

test: deps ## every test: vet, unit, integration against real MariaDB/Consul/Vault, fuzz seeds; with -race
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

build: ## build the service binaries into bin/
	$(GO) build -trimpath -o $(BIN_DIR)/ ./cmd/...

certs: ## (re)issue the development CA and the gateway's localhost certificate into certs/
	$(GO) run ./cmd/devcerts -out certs

lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

fuzz: ## fuzz the gateway's order decoder for FUZZTIME
	$(GO) test -run '^$$' -fuzz FuzzPlaceOrder -fuzztime $(FUZZTIME) ./gateway

# Operator rotations on the running stack (`make run`); each keeps orders flowing. See the README's runbook.
rotate-db-creds: ## revoke every MySQL credential of the order service (it fetches new ones)
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh db-creds
rotate-db-root: ## rotate the password of the MySQL admin that Vault uses
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh db-root
rotate-secret-id: ## deliver a new AppRole secret_id to order by file, destroy the old one
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh secret-id
rotate-transit-key: ## rotate the PII transit key and rewrap stored data keys
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh transit-key
rotate-gateway-cert: ## issue a new gateway certificate (reloaded without restart)
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh gateway-cert
rotate-connect-ca: ## rotate the Consul Connect CA root
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh connect-ca

bench: deps ## ceiling (raw MySQL) vs direct vs mesh, interleaved, ~6 min; prints a table, writes docs/benchmarks.md (BENCH_FLAGS=-h)
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

clean: stop ## stop the stack and remove its state (keeps the cached consul/vault binaries)
	rm -rf $(STATE_DIR) $(BIN_DIR)
