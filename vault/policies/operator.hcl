# The day-2 operator's token (meshctl writes it to .state/vault/operator-token at the first bootstrap, then revokes
# the root token): the runbook and nothing else. It writes no policy, auth method, mount or role, so a copy of the
# file cannot widen its own rights (e2e/attacker_tokens_test.go checks sys/capabilities-self).
#
# Which run uses what:
#   - `meshctl bootstrap` after the first, `meshctl kubernetes-auth`, `meshctl rotate connect-ca`: NOT this token,
#     but a root token generated for the run from the unseal key, traded for a 15-minute one, revoked at its end
#     (provision/admin.go). They write policies (this one included), mounts, auth methods and roles.
#   - Minting or deleting a Consul token (a delivery whose instance has no live token, `meshctl rotate
#     consul-token` and `consul-token-retire`): the same, for that step only. It needs Consul's acl = "write",
#     which may also write Consul policies, so this token cannot lease it (consul/creds/provisioner).
#   - `meshctl deliver`, `meshctl rotate` (the rest), `meshctl token`: this token, with the paths below.
# A new operator token, or the break-glass path, is in the README ("Operator access").

# deliver, rotate secret-id: an instance's role_id, a response-wrapped secret_id, and retiring its earlier ones.
# Minting a secret_id lets the holder log in as that service: that is delivery, and the reason this file is 0600 root.
path "auth/approle/role/+/role-id" { capabilities = ["read"] }
path "auth/approle/role/+/secret-id" { capabilities = ["update", "list"] }
path "auth/approle/role/+/secret-id-accessor/lookup" { capabilities = ["update"] }
path "auth/approle/role/+/secret-id-accessor/destroy" { capabilities = ["update"] }

# token consul-ui, token consul-operator: people's Consul tokens.
path "consul/creds/ui-read" { capabilities = ["read"] }
path "consul/creds/operator" { capabilities = ["read"] }

# rotate db-creds, db-root, transit-key (read: the new version), logins.
path "sys/leases/revoke-prefix/database/creds/order" { capabilities = ["update", "sudo"] }
path "database/rotate-root/pizza" { capabilities = ["update"] }
path "transit/keys/orders-pii/rotate" { capabilities = ["update"] }
path "transit/keys/orders-pii" { capabilities = ["read"] }
path "sys/leases/revoke-prefix/auth/approle/login" { capabilities = ["update", "sudo"] }

# token staff NAME: issue and revoke staff tokens (only their hashes are stored).
path "secret/data/pizza/staff-tokens" { capabilities = ["create", "read", "update", "patch"] }

# Leases the runbook holds (the Consul tokens it leased) and its own token.
path "sys/leases/revoke" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
# What this token may do, asked by its holder (the check in e2e/attacker_tokens_test.go).
path "sys/capabilities-self" { capabilities = ["update"] }

# meshctl cluster status: the raft peers of Vault on integrated storage (Compose), and their health. Read only:
# removing a peer changes the cluster's membership, so it takes a provisioning run (meshctl cluster remove-peer).
path "sys/storage/raft/configuration" { capabilities = ["read"] }
path "sys/storage/raft/autopilot/state" { capabilities = ["read"] }
