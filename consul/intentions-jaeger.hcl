# Where spans go through the mesh (Compose, Kubernetes), only the two services may reach Jaeger's OTLP receiver,
# and only through the sidecars' mTLS. The local stack exports over loopback instead (scripts/stack.sh says why).
Kind = "service-intentions"
Name = "jaeger"
Sources = [
  {
    Name        = "gateway"
    Action      = "allow"
    Description = "the gateway exports its spans"
  },
  {
    Name        = "order"
    Action      = "allow"
    Description = "order exports its spans"
  },
]
