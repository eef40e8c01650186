# Policy of the gateway's AppRole. The gateway never touches MySQL or customer PII in Vault:
# it only keeps its own token alive. Add pki issue rights here if the gateway's certificate
# comes from Vault's pki engine (e.g. path "pki/issue/gateway" { capabilities = ["update"] }).

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
