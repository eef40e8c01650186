# Consul's token for Vault as the Connect CA (ca_provider = "vault"). Consul mounts and manages the root and
# intermediate PKI engines itself. A rotation (meshctl rotate connect-ca) moves to a new root mount, so each mount
# path ends in a generation: connect-root/g1, connect-root/g2, … ("+" in a policy matches one path segment).
path "sys/mounts/connect-root/+" { capabilities = ["create", "read", "update"] }
path "sys/mounts/connect-inter/+" { capabilities = ["create", "read", "update", "delete"] }
path "sys/mounts/connect-inter/+/tune" { capabilities = ["update"] }
path "connect-root/+/*" { capabilities = ["read"] }
path "connect-root/+/root/generate/internal" { capabilities = ["update"] }
path "connect-root/+/root/sign-intermediate" { capabilities = ["update"] }
# Cross-signing the next root during a rotation.
path "connect-root/+/root/sign-self-issued" { capabilities = ["update", "sudo"] }
path "connect-inter/+/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
