"""Logs, metrics and billing of invocations."""
