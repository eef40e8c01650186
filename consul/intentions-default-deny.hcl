# Zero trust: no service may reach another unless an intention below says so.
# Applied by scripts/stack.sh with `consul config write`.
Kind = "service-intentions"
Name = "*"
Sources = [
  {
    Name        = "*"
    Action      = "deny"
    Description = "default deny: every allowed path is listed explicitly"
  },
]
