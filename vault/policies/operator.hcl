# The operator's token (meshctl writes it to .state/vault/operator-token at the first bootstrap, then revokes the
# root token). Exactly the paths that `meshctl bootstrap` needs on later runs and that the runbook uses; nothing
# else. A new one, or the break-glass path, is in the README ("Operator access").

# Bootstrap, re-run on every `make run`: the services' policies (not this one), mounts, roles, database, transit.
path "sys/policies/acl/order" { capabilities = ["create", "read", "update"] }
path "sys/policies/acl/order-migrate" { capabilities = ["create", "read", "update"] }
path "sys/policies/acl/gateway" { capabilities = ["create", "read", "update"] }
path "sys/policies/acl/connect-ca" { capabilities = ["create", "read", "update"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/auth" { capabilities = ["read"] }
path "sys/audit" { capabilities = ["read", "sudo"] }
path "auth/approle/role/+" { capabilities = ["create", "read", "update"] }
path "auth/approle/role/+/role-id" { capabilities = ["read"] }
path "database/config/pizza" { capabilities = ["read", "update"] }
path "database/roles/+" { capabilities = ["create", "read", "update"] }
path "transit/keys/orders-pii" { capabilities = ["create", "read", "update"] }
path "consul/config/access" { capabilities = ["read"] }
# The Connect CA's AppRole login (its mount and role are written with a root token): a new secret_id for Consul on
# every run, the older ones destroyed; revoking the static token a CA configuration held before the AppRole.
path "auth/approle-connect-ca/role/connect-ca/role-id" { capabilities = ["read"] }
path "auth/approle-connect-ca/role/connect-ca/secret-id" { capabilities = ["update", "list"] }
path "auth/approle-connect-ca/role/connect-ca/secret-id-accessor/destroy" { capabilities = ["update"] }
path "auth/token/revoke" { capabilities = ["update"] }

# `meshctl kubernetes-auth`, once per cluster: enable the Kubernetes auth method (sudo, as every auth mount),
# point it at the cluster's API and write the roles of vault/kubernetes; read them back to check.
path "sys/auth/kubernetes" { capabilities = ["update", "sudo"] }
path "auth/kubernetes/config" { capabilities = ["create", "read", "update"] }
path "auth/kubernetes/role/+" { capabilities = ["create", "read", "update"] }

# Delivering credentials to a service instance: its role_id, a response-wrapped secret_id, and retiring the old.
path "auth/approle/role/+/secret-id" { capabilities = ["update", "list"] }
path "auth/approle/role/+/secret-id-accessor/lookup" { capabilities = ["update"] }
path "auth/approle/role/+/secret-id-accessor/destroy" { capabilities = ["update"] }

# Consul tokens: meshctl's short-lived provisioner token, the UI's read-only token, the runbook's operator token.
path "consul/creds/provisioner" { capabilities = ["read"] }
path "consul/creds/ui-read" { capabilities = ["read"] }
path "consul/creds/operator" { capabilities = ["read"] }

# Runbook rotations.
path "sys/leases/revoke-prefix/database/creds/order" { capabilities = ["update", "sudo"] }
path "database/rotate-root/pizza" { capabilities = ["update"] }
path "transit/keys/orders-pii/rotate" { capabilities = ["update"] }
# Forces every service to log in again (after a secret_id rotation, to prove the new one works).
path "sys/leases/revoke-prefix/auth/approle/login" { capabilities = ["update", "sudo"] }
path "sys/mounts/connect-root/+" { capabilities = ["read", "delete"] }

# Staff sign-in: issue and revoke staff tokens (only their hashes are stored).
path "secret/data/pizza/staff-tokens" { capabilities = ["create", "read", "update", "patch"] }

# Leases the runbook holds (consul tokens it leased) and its own token.
path "sys/leases/revoke" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
