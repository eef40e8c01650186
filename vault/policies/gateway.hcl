# Policy of the gateway's roles (AppRole, Kubernetes auth). The gateway never touches MySQL or customer PII in Vault:
# it reads the hashes of staff bearer tokens and keeps its own token alive. Add pki issue rights here if the gateway's certificate
# comes from Vault's pki engine (e.g. path "pki/issue/gateway" { capabilities = ["update"] }).

# SHA-256 hashes of staff tokens, by staff name (never the tokens themselves).
path "secret/data/pizza/staff-tokens" {
  capabilities = ["read"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
