# A Vault node in Compose (vault-1, vault-2, vault-3): added to vault/server.hcl (the settings shared with the
# local stack). TLS only, with a certificate of its own for the names `vault` and `vault-N` from the project's CA
# (certs-vault-N). Its node ID, API address and cluster address come from VAULT_RAFT_NODE_ID, VAULT_API_ADDR and
# VAULT_CLUSTER_ADDR in docker-compose.yml.

# Integrated storage: the three nodes replicate on raft, one is active and the standbys forward to it. A new or
# emptied node joins whichever of the others answers; it is unsealed with the cluster's key (vault-unsealer).
storage "raft" {
  path = "/vault/data"

  # HashiCorp's production timing, as Consul's: a standby calls an election after about 1 s without a heartbeat.
  performance_multiplier = 1

  retry_join {
    leader_api_addr     = "https://vault-1:8200"
    leader_ca_cert_file = "/vault/tls/ca.pem"
  }
  retry_join {
    leader_api_addr     = "https://vault-2:8200"
    leader_ca_cert_file = "/vault/tls/ca.pem"
  }
  retry_join {
    leader_api_addr     = "https://vault-3:8200"
    leader_ca_cert_file = "/vault/tls/ca.pem"
  }
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201" # node to node (raft and forwarding): mutual TLS Vault keys itself
  tls_cert_file   = "/vault/tls/vault.pem"
  tls_key_file    = "/vault/tls/vault-key.pem"
  tls_min_version = "tls12"
}
