"""Every bound kindling puts on what a caller or a sandbox can make the server hold.

One place, so an operator reads all of them together, each beside the figure AWS
documents for the same thing (or "AWS: -" where AWS states none). A bound is charged to
the sandbox or the caller that uses it; the modules that enforce them import them from
here and nowhere else defines a second copy.

Sections: front end (API callers), Runtime API (a sandbox's connections to the server),
logs, code uploads, sandbox resources, async queue.
"""

from __future__ import annotations

# --- front end (API callers) ---------------------------------------------------------

# --- Runtime API (per sandbox) -------------------------------------------------------

# --- logs ------------------------------------------------------------------------------

# --- code uploads ----------------------------------------------------------------------

# --- sandbox resources -----------------------------------------------------------------

# --- async queue -----------------------------------------------------------------------

# --- sandbox privileges (the host's check of SnapStart copies, worker/sandbox/privileges.py)

#: How long a copy's first process may stay privileged in its template's cgroup after
#: the copy reported (it exits right after its fork; longer is taken for tampering).
#: AWS: -
SNAPSHOT_SETTLE_S = 2.0
#: How often a cgroup's task list is read again for threads that appeared while it was
#: checked; a sandbox still forking after that many rounds fails the check. AWS: -
PRIVILEGE_CHECK_ROUNDS = 20
#: How long one thread may take to stop for the host to read its seccomp filters (a
#: loaded host answers in well under a millisecond; longer fails the check). AWS: -
PRIVILEGE_CHECK_STOP_S = 5.0
