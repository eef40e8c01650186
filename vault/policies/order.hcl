# Policy of the order service's AppRole: its own dynamic MySQL credentials, PII encryption, its own token.

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

# Customer phone and address: encrypt before MySQL, decrypt on read. No key management, no other keys.
path "transit/encrypt/orders-pii" {
  capabilities = ["update"]
}
path "transit/decrypt/orders-pii" {
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
