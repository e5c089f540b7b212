"""Logs of invocations (with their REPORT lines' billed durations) and their metrics."""
