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
