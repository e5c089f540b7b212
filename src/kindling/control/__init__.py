"""The control plane: functions and their configuration, code storage, tags."""
