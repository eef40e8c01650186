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
