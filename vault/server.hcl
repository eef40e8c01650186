# Vault server settings for the local stack. scripts/stack.sh adds a second file under the state folder with the
# storage path, the TLS listener (address, certificate and key) and api_addr: they depend on STATE_DIR, VAULT_PORT
# and CERTS_DIR. There is no plain-HTTP listener: every client verifies the certificate against certs/ca.pem.
ui = false # the pinned source build ships no web UI; the CLI and meshctl are the operator's tools

# mlock needs CAP_IPC_LOCK and a memlock limit a laptop or container may not grant; HashiCorp advises turning it
# off with integrated storage (Compose's raft) anyway, whose memory-mapped files it would pin.
disable_mlock = true

log_level = "info"

# Short leases by default so nothing long-lived is handed out by accident. The ceiling allows the operator's
# periodic token (meshctl) to outlive a long weekend with the stack stopped.
default_lease_ttl = "1h"
max_lease_ttl     = "768h"

# Vault's unauthenticated sys/rekey/* and sys/generate-root/* endpoints stay on: the pinned Vault 1.21.0 has no
# setting to turn them off (`disable_unauthed_rekey_endpoints` is OpenBao's; this Vault would only warn about it
# as an unknown field and change nothing). On `make run` the host filter keeps every account but root and the
# service accounts off Vault's port (README, "Security on one host").
