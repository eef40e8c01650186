# Only the gateway may call the order service (through the sidecars' mTLS).
Kind = "service-intentions"
Name = "order"
Sources = [
  {
    Name        = "gateway"
    Action      = "allow"
    Description = "the public edge forwards customer and staff requests to order"
  },
]
