# The runbook's Consul rights: inspect the mesh, change intentions, rotate the Connect CA. It cannot mint tokens
# or register services.
service_prefix "" {
  policy     = "read"
  intentions = "write"
}
node_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
operator = "write"
