# Read-only operator view for the Consul UI: services, their sidecars and health, nodes, and the intentions
# between services. It can change nothing. `make consul-ui-token` leases a token with it from Vault.
service_prefix "" {
  policy     = "read"
  intentions = "read"
}
node_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
