# Consul agent of the local stack: a single server with persistent state and ACLs on.
# scripts/stack.sh adds a second file under the state folder with the data folder, ports, bind addresses and the
# TLS files (they depend on STATE_DIR and the ports).
server           = true
bootstrap_expect = 1

ui_config {
  enabled = true
}

connect {
  enabled = true
}

# Default deny: a request without a token, or with a token that lacks the right, is refused. The ACL system is
# bootstrapped by Vault's Consul secrets engine (meshctl bootstrap), which keeps the management token itself.
acl {
  enabled                  = true
  default_policy           = "deny"
  # If the leader is unreachable, keep serving from cached ACLs rather than denying everything.
  down_policy              = "extend-cache"
  # The agent's own token (node identity), set through the API by meshctl, survives restarts.
  enable_token_persistence = true
}

# The HTTP API listens on a unix socket only root may open (scripts/stack.sh sets its path, owner and mode); no
# loopback port. Why: the agent answers /v1/agent/connect/ca/leaf/<service> from a cache keyed by service name
# without checking the caller's token once a sidecar holds that certificate, so any process that reaches the API
# could take a running service's identity. Each service's user reaches the agent through a front that passes its
# own service's leaf only, and operators reach the UI over HTTPS through a front that passes none
# (`meshctl serve-front`). No DNS, and no gRPC (the built-in proxy uses the HTTP API; Envoy is not used here).
ports {
  dns      = -1
  grpc     = -1
  grpc_tls = -1
  https    = -1
}

log_level = "INFO"

# No calls home from a local stack.
disable_update_check = true

# The built-in Connect proxy asks the agent on each new upstream connection, so a burst of streams (a thousand
# staff boards) would pass the default of 200 concurrent HTTP connections per client address and be refused.
limits {
  http_max_conns_per_client = 4096
}

# Registrations made through the API, with their tokens, are kept in the data folder and restored on restart.
