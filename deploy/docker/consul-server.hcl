# A Consul server in Compose (consul-1, consul-2, consul-3; the node name comes from -node): added to
# consul/agent.hcl (server, ACLs default deny, no DNS or gRPC). Its HTTP API listens on the loopback of its pod
# only, shared with nobody but its front (meshctl serve-front, HTTPS on :8501), which is how Vault, meshctl and
# operators reach it. The server holds no service, so no leaf certificate is ever cached here; the front refuses
# leaf requests anyway. Each server has an RPC pair of its own (certs-consul-rpc-N) under the names below.
data_dir    = "/consul/data"
bind_addr   = "{{ GetInterfaceIP \"eth0\" }}"
client_addr = "127.0.0.1"

ports {
  http = 8500
}

# Three servers on raft: the cluster elects a leader once all three have met, and keeps one while two are up.
bootstrap_expect = 3
retry_join       = ["consul-1", "consul-2", "consul-3"]

# HashiCorp's production timing: a follower calls an election after about 1 s without the leader's heartbeat
# (the default multiplier of 5 is for small development machines and makes that 5 s).
performance {
  raft_multiplier = 1
}

# Autopilot removes a dead server once a new one has joined, but never below three voters: replacing a server is
# the operator's call (README, "Replacing a dead server").
autopilot {
  cleanup_dead_servers      = true
  min_quorum                = 3
  last_contact_threshold    = "200ms"
  server_stabilization_time = "10s"
}

# No call home: the update check needs the internet, and says nothing an operator needs.
disable_update_check = true

# Server RPC takes only TLS with a client certificate, and agents check the server's name (server.dc1.consul),
# so a container on the Compose network joins as neither server nor client without the gossip key and a
# certificate. The server's pair comes from the project's CA (certs-consul-rpc, a volume only this container
# mounts); client agents get theirs from the server over auto_encrypt, which needs their node token.
tls {
  defaults {
    ca_file         = "/consul/tls/ca.pem"
    cert_file       = "/consul/tls/consul-rpc.pem"
    key_file        = "/consul/tls/consul-rpc-key.pem"
    verify_outgoing = true
  }
  internal_rpc {
    verify_incoming        = true
    verify_server_hostname = true
  }
}
auto_encrypt {
  allow_tls = true
}
