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

# --- crash cleanup and reaping ----------------------------------------------------------

#: How long one sweep of a dead instance (or of one's own groups at start and stop) may
#: wait for its killed processes to exit before it gives up on a cgroup that stays
#: busy. Killed processes exit in milliseconds; a loaded host with hundreds of
#: sandboxes can take seconds. AWS: -
SWEEP_S = 30.0
#: How long a starting server waits for another process (a dead instance's supervisor,
#: another starting server) that holds a crash record's lock while it sweeps. AWS: -
RECORD_LOCK_WAIT_S = 60.0
#: How often the server looks for zombie children nobody waits for (orphans of killed
#: launchers, reparented to it as a child subreaper). A zombie costs a pid and a few KB
#: of kernel memory, so seconds are soon enough. AWS: -
REAP_INTERVAL_S = 1.0
