"""Runtimes: the runtime clients that run inside a function sandbox, and the catalog of
the runtimes this host can start (read on the host, never inside a sandbox)."""
