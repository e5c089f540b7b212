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
