"""Sandbox backends behind one Protocol, the safety wrapper every backend goes through,
and what the backends are built from on one host: cgroups, network slots and egress,
launchers and zygotes, each sandbox's Runtime API server, SnapStart snapshots, and the
cleanup after a crash."""
