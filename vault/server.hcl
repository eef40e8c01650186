# Vault server settings for the local stack. scripts/stack.sh adds a second file under the state
# folder with the storage path, listener address and api_addr (they depend on STATE_DIR and VAULT_PORT).
ui = false # the pinned source build ships no web UI; the CLI is the operator's tool

# mlock needs CAP_IPC_LOCK and a memlock limit a laptop or container may not grant; file storage is local anyway.
disable_mlock = true

log_level = "info"

# Short leases by default so nothing long-lived is handed out by accident.
default_lease_ttl = "1h"
max_lease_ttl     = "24h"
