# Policy of the order service's roles (AppRole, Kubernetes auth): its own dynamic MySQL credentials, PII
# encryption, its own token.

# Short-lived MySQL user with SELECT/INSERT/UPDATE on the pizza schema only.
path "database/creds/order" {
  capabilities = ["read"]
}

# Renew the credentials' lease (LifetimeWatcher) and look it up.
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Customer phone and address are sealed with data keys (envelope encryption): a new data key now and then,
# unwrapping a stored one on read, and rewrapping stored ones after a key rotation (`order rewrap-pii`).
# No key management (rotate, config, export) and no other keys.
path "transit/datakey/plaintext/orders-pii" {
  capabilities = ["update"]
}
path "transit/decrypt/orders-pii" {
  capabilities = ["update"]
}
path "transit/rewrap/orders-pii" {
  capabilities = ["update"]
}

# The service keeps its own token alive and gives it back on shutdown.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
