# Vault in Docker Compose: the repository's vault/server.hcl plus this file (storage and listener, which
# scripts/stack.sh writes into .state/vault/local.hcl on the local stack).
storage "file" {
  path = "/vault/file" # the vault-data volume
}

# Plain HTTP on the compose network only (not published to the host): the services reach it by name.
# Put TLS here before this listener is reachable from anywhere else.
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

api_addr = "http://vault:8200"
