"""The control plane: functions, versions, aliases, tags, reserved concurrency, their code,
and the store that keeps them."""
