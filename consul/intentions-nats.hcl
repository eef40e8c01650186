# Only the order service may reach NATS (through the sidecars' mTLS): it publishes the event log and reads the
# stream back for its SSE clients. The gateway never talks to NATS.
Kind = "service-intentions"
Name = "nats"
Sources = [
  {
    Name        = "order"
    Action      = "allow"
    Description = "order relays its events to JetStream and serves streams from it"
  },
]
