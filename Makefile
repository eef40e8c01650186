# Pizza Joint mesh. `make run` starts everything as local processes; `make test` runs every test.
# Both install or build what they need (MariaDB via apt-get, consul and vault from pinned Go modules).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
STATE_DIR ?= $(CURDIR)/.state
BIN_DIR ?= $(CURDIR)/bin
# The mesh tests start a whole stack per package; give them time on a 2-core machine (e2e alone takes about 25 min).
TEST_TIMEOUT ?= 45m
FUZZTIME ?= 30s

.PHONY: help run stop status test deps rotate-db-creds rotate-db-root rotate-secret-id rotate-transit-key \
	rotate-gateway-cert rotate-connect-ca rotate-consul-token rotate-nats-creds rotate-logins promote-db-replica staff-token consul-ui-token \
	consul-operator-token demo build certs lint fmt fuzz fuzz-smoke bench bench-events bench-smoke clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

run: ## start the whole stack (MariaDB, Consul, Vault, NATS, Jaeger, sidecars, order, gateway) and print where to reach it
	STATE_DIR=$(STATE_DIR) scripts/stack.sh start

stop: ## stop everything `make run` started
	STATE_DIR=$(STATE_DIR) scripts/stack.sh stop

status: ## show which processes of the stack are running
	STATE_DIR=$(STATE_DIR) scripts/stack.sh status

deps: ## install or build what the tests need: mariadb-server, curl, chromium, consul, vault, nats-server, jaeger
	@# consul, vault, jaeger and the Compose plugin build (the first time) while apt-get installs the packages.
	@scripts/tools.sh prebuild consul vault nats-server jaeger compose & build=$$!; \
		for t in mariadb chromium curl; do scripts/tools.sh ensure $$t >/dev/null; done; \
		wait $$build

test: deps ## every test: vet, unit, integration against real MariaDB/Consul/Vault, Compose on Docker, Kubernetes manifests; with -race
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@# Each fuzz target 1000 executions beyond its seeds (and the committed corpus), before the long tests.
	$(MAKE) --no-print-directory fuzz-smoke
	@# The Compose tests run after the others: Docker creating networks while headless Chromium runs makes the
	@# browser tests fail with ERR_NETWORK_CHANGED, and beside e2e the load on 2 cores (load average 30 to 46)
	@# broke e2e's outage and 1,000-stream tests.
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /deploy/composetest)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./deploy/composetest
	@# The Kubernetes manifests, decoded strictly against k8s.io/api in a module of their own (deploy/kubernetes/check).
	cd deploy/kubernetes/check && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 ./...

build: ## static binaries into bin/: gateway, order, meshctl, devcerts (and the other commands), consul, vault, nats-server, jaeger
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o $(BIN_DIR)/ ./cmd/...
	@# consul, vault, nats-server and jaeger from their pinned modules (built once into .cache/bin): a hard link when possible.
	@scripts/tools.sh prebuild consul vault nats-server jaeger
	@for t in consul vault nats-server jaeger; do src="$$(readlink -f "$$(scripts/tools.sh ensure $$t)")"; \
		ln -f "$$src" $(BIN_DIR)/$$t 2>/dev/null || cp -f "$$src" $(BIN_DIR)/$$t; done
	@# The images run these as non-root users: readable and executable by all, whatever the caller's umask.
	chmod 755 $(BIN_DIR) $(BIN_DIR)/*

certs: ## (re)issue the development CA and the gateway's localhost certificate into certs/
	$(GO) run ./cmd/devcerts -out certs

lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# package:target for every fuzz target; `go test` runs their seeds (f.Add and the committed corpus in
# <pkg>/testdata/fuzz/<Target>/), `make fuzz` explores and keeps a small corpus, `make fuzz-smoke` (in make test)
# runs each for a fixed number of executions beyond its seeds.
FUZZ_TARGETS = ./gateway:FuzzPlaceOrder ./gateway/staff:FuzzStaffLogin ./order/orderclient:FuzzDecodeResponse ./order:FuzzValidID \
	./order/httpapi:FuzzListCursor ./platform/sse:FuzzLastEventID
# A count, not a duration: Go 1.26's fuzz coordinator can fail a time-bounded run at its deadline with nothing
# found, when a starved worker misses it ("context deadline exceeded", golang/go#75804, fixed in Go 1.27). A count
# has no deadline: on a loaded machine it only takes longer. 1000 executions take 1 to 12 s per target here.
FUZZ_SMOKE_TIME ?= 1000x

fuzz: ## run every fuzz target for FUZZTIME each and keep a small corpus in testdata/fuzz/ (commit it)
	GO=$(GO) scripts/fuzz.sh --keep-corpus $(FUZZTIME) $(FUZZ_TARGETS)

fuzz-smoke: ## run every fuzz target for FUZZ_SMOKE_TIME executions beyond its seeds (part of make test)
	GO=$(GO) scripts/fuzz.sh $(FUZZ_SMOKE_TIME) $(FUZZ_TARGETS)

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
rotate-nats-creds: ## new NATS key for every order replica (or INSTANCE=order-1); the previous one dropped once unused
	STATE_DIR=$(STATE_DIR) scripts/rotate.sh nats-creds $(INSTANCE)

# The database primary lost for good: the replica becomes the primary (README, "Losing the database primary").
promote-db-replica: ## make the MariaDB replica the primary when the primary is lost for good (Vault and order follow)
	STATE_DIR=$(STATE_DIR) scripts/stack.sh promote-db-replica

bench: deps ## ceiling (raw MySQL) vs direct vs mesh and its variants (untraced, async replication), interleaved, ~10 min; prints tables, writes docs/benchmarks.md (BENCH_FLAGS=-h)
	$(GO) run ./cmd/bench $(BENCH_FLAGS)

bench-events: deps ## the event path (JetStream): status change → customer frame at 100 and 1,000 streams, ~3 min; writes its section of docs/benchmarks.md (BENCH_FLAGS=-h)
	$(GO) run ./cmd/bench events $(BENCH_FLAGS)

bench-smoke: deps ## the bench once at one level for a few seconds (part of `make test`): both stacks, every setup; ~2 min, ~70 CPU-s
	$(GO) test -race -count=1 -run '^TestBenchSmoke$$' -v ./internal/bench

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

# Docker: the same mesh as containers (docker-compose.yml; how it maps: deploy/README.md). Needs a Docker engine;
# the Compose v2 plugin is built from its pinned module when missing (scripts/tools.sh ensure compose). Images are
# FROM scratch with the static binaries of `make build`: nothing is pulled but MariaDB's official image, and where
# that cannot be pulled either, an equivalent one is built from Debian's packages (deploy/docker/mariadb-image.sh).
.PHONY: dockerize run-docker stop-docker status-docker docker-consul-ui-token docker-traces-cert
DOCKER ?= docker
export PIZZA_TAG ?= dev
# A clear failure instead of a build or compose error halfway through when no engine answers.
DOCKER_ENGINE_CHECK = $(DOCKER) info >/dev/null 2>&1 || { echo "no Docker engine reachable ('$(DOCKER) info' failed): start Docker, or point DOCKER_HOST at one" >&2; exit 1; }

dockerize: build ## build the images pizzajoint/{order,gateway,meshctl,devcerts,consul,vault,nats,jaeger}:dev from bin/ (no pull)
	@$(DOCKER_ENGINE_CHECK)
	DOCKER=$(DOCKER) deploy/docker/build-images.sh

run-docker: dockerize ## start the mesh in Docker Compose, wait until POST /pizza works end to end, print where to reach it
	DOCKER=$(DOCKER) deploy/docker/run.sh up

stop-docker: ## stop the Docker Compose mesh; volumes (orders, Vault's data) are kept. Wipe: docker compose down -v
	DOCKER=$(DOCKER) deploy/docker/run.sh down

status-docker: ## the Compose clusters: Consul's and Vault's raft peers (leader, active node, health), the NATS stream
	@DOCKER=$(DOCKER) deploy/docker/run.sh status

docker-consul-ui-token: ## a read-only token to log in to the Compose stack's Consul UI (leased from Vault for 8 h)
	@DOCKER=$(DOCKER) deploy/docker/run.sh meshctl token consul-ui

docker-traces-cert: ## the client certificate that opens the Compose stack's Jaeger UI, into certs/ (owner-only key)
	@DOCKER=$(DOCKER) deploy/docker/run.sh traces-cert
