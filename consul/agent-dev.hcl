# Local dev agent settings (scripts/stack.sh adds -dev, ports and bind addresses from env).
ui_config {
  enabled = true
}

connect {
  enabled = true
}

# The built-in sidecar proxies and services talk to the agent over plain HTTP on loopback.
ports {
  dns = -1
}

log_level = "INFO"

# Every client of this agent is on loopback (services, sidecars). The built-in Connect proxy asks the agent
# on each new upstream connection, so a burst of streams (a thousand staff boards) would pass the default of
# 200 concurrent HTTP connections per client address and be refused with 429.
limits {
  http_max_conns_per_client = 4096
}
