# shellcheck shell=bash
# Sourced (not executed: keep this file non-executable) by the mysql:8.4 image's entrypoint, once, when the data
# volume is empty, as user mysql, while a temporary server listens on its socket only. It does what
# scripts/bootstrap.sh does over MariaDB's root socket on the local stack, so that after it nobody knows a
# working MySQL password:
#
#   1. the `pizza` schema, and Vault's admin vault_admin@<Vault's address> with the least grants that work;
#      its first password goes only to a tmpfs hand-off volume that just the vault-bootstrap container
#      mounts, which gives it to Vault, has Vault rotate it (rotate-root) and deletes the file;
#   2. root (root@localhost only, MYSQL_ROOT_HOST=localhost) gets a second random password that is kept
#      nowhere: the one the entrypoint printed to the log for MYSQL_RANDOM_ROOT_PASSWORD is dead before the
#      server takes its first connection. Break-glass: restart mysqld with --skip-grant-tables.
#
# Sourcing is what lets step 2 work: the entrypoint stops its temporary server with MYSQL_ROOT_PASSWORD, so
# the new value goes into that variable (no longer exported, so mysqld's environment never holds it).
(return 0 2>/dev/null) || { echo "mysql-init.sh must be sourced by the mysql entrypoint (chmod -x it)" >&2; exit 1; }

: "${PIZZA_DB_NAME:?}" "${PIZZA_VAULT_ADMIN_HOST:?}" "${PIZZA_ADMIN_HANDOFF_FILE:?}"

pizza_secret="$(openssl rand -hex 32)"
# Same grants as scripts/bootstrap.sh's admin_grants: create and drop the roles' users, and hold (with GRANT
# OPTION) exactly what vault/database/*.sql grant on the schema.
docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS \`$PIZZA_DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER 'vault_admin'@'$PIZZA_VAULT_ADMIN_HOST' IDENTIFIED BY '$pizza_secret';
GRANT CREATE USER ON *.* TO 'vault_admin'@'$PIZZA_VAULT_ADMIN_HOST';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES
  ON \`$PIZZA_DB_NAME\`.* TO 'vault_admin'@'$PIZZA_VAULT_ADMIN_HOST' WITH GRANT OPTION;
SQL
(umask 077 && printf '%s' "$pizza_secret" >"$PIZZA_ADMIN_HANDOFF_FILE")
mysql_note "vault_admin@$PIZZA_VAULT_ADMIN_HOST created; its first password is in the hand-off volume for Vault"

pizza_secret="$(openssl rand -hex 32)"
docker_process_sql --database=mysql <<<"ALTER USER 'root'@'localhost' IDENTIFIED BY '$pizza_secret';"
MYSQL_ROOT_PASSWORD="$pizza_secret"
export -n MYSQL_ROOT_PASSWORD
unset pizza_secret
mysql_note "root@localhost password replaced by one that is stored nowhere"
