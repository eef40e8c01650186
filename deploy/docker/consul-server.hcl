# The Consul server in Compose: added to consul/agent.hcl (server, ACLs default deny, no DNS or gRPC). Its HTTP
# API listens on the loopback of the consul pod only, shared with nobody but the UI's front (meshctl serve-front,
# HTTPS on :8501), which is how Vault, meshctl and operators reach it. The server holds no service, so no leaf
# certificate is ever cached here; the front refuses leaf requests anyway.
node_name   = "consul-server"
data_dir    = "/consul/data"
bind_addr   = "{{ GetInterfaceIP \"eth0\" }}"
client_addr = "127.0.0.1"

ports {
  http = 8500
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
