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
	rotate-gateway-cert rotate-connect-ca rotate-consul-token rotate-logins staff-token consul-ui-token \
	consul-operator-token demo build certs lint fmt fuzz bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

run: ## start the whole stack (MariaDB, Consul, Vault, sidecars, order, gateway) and print where to reach it
	STATE_DIR=$(STATE_DIR) scripts/stack.sh start

stop: ## stop everything `make run` started
	STATE_DIR=$(STATE_DIR) scripts/stack.sh stop

status: ## show which processes of the stack are running
	STATE_DIR=$(STATE_DIR) scripts/stack.sh status

deps: ## install or build what the tests need: mariadb-server, jq, curl, chromium, consul, vault
	@scripts/tools.sh ensure mariadb >/dev/null
	@scripts/tools.sh ensure chromium >/dev/null
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
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# package:target for every fuzz target; `go test` runs their seeds, `make fuzz` explores.
FUZZ_TARGETS = ./gateway:FuzzPlaceOrder ./gateway:FuzzStaffLogin ./order:FuzzDecodeResponse ./order:FuzzValidID \
	./order:FuzzListCursor ./platform/sse:FuzzLastEventID

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for t in $(FUZZ_TARGETS); do echo "fuzz $$t"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; done

# Operator rotations on the running stack (`make run`); each keeps orders flowing. See the README's runbook.
rotate-db-creds: ## revoke every MySQL credential of the order service (it fetches new ones)
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh db-creds
rotate-db-root: ## rotate the password of the MySQL admin that Vault uses
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh db-root
rotate-secret-id: ## deliver a new wrapped AppRole secret_id to every order replica, destroy the old ones
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh secret-id
rotate-logins: ## revoke every service's Vault token: each logs in again with the secret_id it holds
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh logins
rotate-transit-key: ## rotate the PII transit key and rewrap stored data keys
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh transit-key
rotate-gateway-cert: ## issue a new gateway certificate (reloaded without restart)
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh gateway-cert
rotate-connect-ca: ## move the Connect CA to a new root in Vault's PKI (cross-signed; sidecars keep talking)
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh connect-ca
rotate-consul-token: ## new Consul token for one instance (INSTANCE=order-1 by default), old one deleted
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh consul-token $(INSTANCE)

bench: deps ## ceiling (raw MySQL) vs direct vs mesh, interleaved, ~6 min; prints a table, writes docs/benchmarks.md (BENCH_FLAGS=-h)
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

staff-token: ## issue a staff token for the portal: make staff-token NAME=alice (printed once; only its hash is kept)
	@test -n "$(NAME)" || { echo "usage: make staff-token NAME=<staff name>"; exit 2; }
	@STATE_DIR=$(STATE_DIR) scripts/stack.sh meshctl token staff "$(NAME)"

consul-ui-token: ## a read-only token to log in to the Consul UI (leased from Vault for 8 h)
	@STATE_DIR=$(STATE_DIR) scripts/stack.sh meshctl token consul-ui

consul-operator-token: ## a Consul token for the consul CLI: intentions, CA (leased from Vault for 1 h)
	@STATE_DIR=$(STATE_DIR) scripts/stack.sh meshctl token consul-operator

demo: ## a simulated kitchen on the running stack: places orders and moves them along (DEMO_FOR=2m)
	@STATE_DIR=$(STATE_DIR) scripts/demo.sh

clean: stop ## stop the stack and remove its state (keeps the cached consul/vault binaries)
	rm -rf $(STATE_DIR) $(BIN_DIR)

# Docker: the same mesh as containers (docker-compose.yml; how it maps: deploy/README.md). Needs a Docker engine
# with the compose plugin; the images come from deploy/docker/Dockerfile, one target each.
.PHONY: dockerize run-docker stop-docker
DOCKER ?= docker
PIZZA_TAG ?= dev
DOCKER_IMAGES := order gateway devcerts bootstrap
# A clear failure instead of a build or compose error halfway through when no engine answers.
DOCKER_ENGINE_CHECK = $(DOCKER) info >/dev/null 2>&1 || { echo "no Docker engine reachable ('$(DOCKER) info' failed): start Docker, or point DOCKER_HOST at one" >&2; exit 1; }
DOCKER_COMPOSE_CHECK = $(DOCKER) compose version >/dev/null 2>&1 || { echo "'$(DOCKER) compose' is missing: install the Docker Compose v2 plugin" >&2; exit 1; }

dockerize: ## build the container images pizzajoint/{order,gateway,devcerts,bootstrap}:dev (PIZZA_TAG=dev)
	@$(DOCKER_ENGINE_CHECK)
	for t in $(DOCKER_IMAGES); do \
		$(DOCKER) build -f deploy/docker/Dockerfile --target $$t -t pizzajoint/$$t:$(PIZZA_TAG) . || exit 1; \
	done

run-docker: dockerize ## start the mesh in Docker Compose, wait until GET /menu works end to end, print where to reach it
	@$(DOCKER_COMPOSE_CHECK)
	PIZZA_TAG=$(PIZZA_TAG) $(DOCKER) compose up -d --wait --wait-timeout 300
	@mkdir -p certs && $(DOCKER) compose cp gateway:/certs/ca.pem certs/docker-ca.pem >/dev/null
	@echo ""
	@echo "Pizza Joint mesh is running in Docker Compose."
	@echo "  Gateway:    https://localhost:8443   (curl --cacert certs/docker-ca.pem https://localhost:8443/menu)"
	@echo "  Consul UI:  http://localhost:8500/ui"
	@echo "  Logs:       docker compose logs -f [service]    Stop: make stop-docker (data kept; add -v to docker compose down to wipe it)"
	@echo "  Operator:   docker compose run --rm --entrypoint bash vault-bootstrap, then export VAULT_TOKEN=\"\$$(cat /vault-init/root-token)\""

stop-docker: ## stop the Docker Compose mesh (volumes, and so orders and Vault's data, are kept)
	@$(DOCKER_ENGINE_CHECK)
	@$(DOCKER_COMPOSE_CHECK)
	$(DOCKER) compose down
