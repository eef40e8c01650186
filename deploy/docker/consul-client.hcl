# A Consul client agent, one per pod (the pod's network namespace is shared by the service, its sidecar and this
# agent only). Its HTTP API listens on the pod's loopback alone: the agent answers leaf-certificate requests from a
# cache keyed by service name without checking the caller's token, and this agent's cache only ever holds its own
# pod's leaf, so nothing outside the pod can take it and nothing inside can take another's. It also runs the
# service's health check against the pod's loopback, and the catalog advertises the sidecar at the pod's address.
# The node's token comes from meshctl setup (token.hcl in the pod's agent volume).
data_dir    = "/consul/data"
bind_addr   = "{{ GetInterfaceIP \"eth0\" }}"
client_addr = "127.0.0.1"
retry_join  = ["consul-1", "consul-2", "consul-3"]

acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
}

ports {
  http     = 8500
  dns      = -1
  grpc     = -1
  grpc_tls = -1
  https    = -1
}

# The built-in proxy asks its agent on every new upstream connection (see consul/agent.hcl).
limits {
  http_max_conns_per_client = 4096
}

log_level = "INFO"

# No call home: the update check needs the internet, and says nothing an operator needs.
disable_update_check = true

# RPC to the server in TLS only, to a certificate that names a server (server.dc1.consul) under the project's CA;
# the agent's own client certificate comes from the server (auto_encrypt), asked with its node token.
tls {
  defaults {
    ca_file         = "/pizza/trust/ca.pem"
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}
auto_encrypt {
  tls = true
}
