# Policy of the order-migrate roles (AppRole; on Kubernetes, the migration Job's Kubernetes auth role): DDL
# credentials for schema migrations, nothing else. Used by `order migrate`, never by the running service.

path "database/creds/order-migrate" {
  capabilities = ["read"]
}

# The migration revokes its own lease when done, so the DDL user lives only minutes.
# `vault lease revoke ID` puts to sys/leases/revoke/ID; only this role's leases are allowed.
path "sys/leases/revoke/database/creds/order-migrate/*" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
