# meshctl's rights, leased from Vault for minutes and revoked when a run ends: mint and delete service and agent
# tokens (acl), give the agent its token, write intentions and set the Connect CA.
acl = "write"
operator = "write"
agent_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy     = "read"
  intentions = "write"
}
node_prefix "" {
  policy = "read"
}
