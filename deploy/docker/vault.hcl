# Vault in Compose: added to vault/server.hcl (the settings shared with the local stack). TLS only, with a
# certificate for the name `vault` from the project's CA (the certs-vault one-shot writes it into vault-tls).
storage "file" {
  path = "/vault/data"
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  tls_cert_file   = "/vault/tls/vault.pem"
  tls_key_file    = "/vault/tls/vault-key.pem"
  tls_min_version = "tls12"
}

api_addr = "https://vault:8200"
