"""Every bound kindling puts on what a caller or a sandbox can make the server hold.

One place, so an operator reads all of them together, each beside the figure AWS
documents for the same thing (or "AWS: -" where AWS states none). A bound is charged to
the sandbox or the caller that uses it; the modules that enforce them import them from
here and nowhere else defines a second copy.

Sections: front end (API callers), Runtime API (a sandbox's connections to the server),
logs, code uploads, sandbox resources, async queue, shutdown.
"""

from __future__ import annotations

# --- front end (API callers) ---------------------------------------------------------

# --- Runtime API (per sandbox) -------------------------------------------------------

# --- logs ------------------------------------------------------------------------------

# --- code uploads ----------------------------------------------------------------------

# --- sandbox resources -----------------------------------------------------------------

# --- async queue -----------------------------------------------------------------------

#: Event invocations the queue runs at once; the rest wait in the store, not in memory.
#: AWS: - (its poller fleet scales with the backlog).
ASYNC_PARALLEL = 64

#: Stored events read per dispatch pass (each holds its payload, up to 256 KB, while it
#: waits for one of the ASYNC_PARALLEL runs). AWS: -.
ASYNC_DISPATCH_BATCH = 1000

#: First wait before an event held back by a throttle or by a platform fault (a sandbox
#: that could not be built) is tried again; each further one doubles it, up to
#: ASYNC_BACKOFF_MAX_S. Neither counts as one of the event's retries, and both end at its
#: maximum age (6 h by default). A throttled event is also woken early when a slot of
#: its function frees. AWS: "the retry interval increases exponentially from 1 second
#: after the first attempt to a maximum of 5 minutes" (for throttles and system errors).
ASYNC_BACKOFF_FIRST_S = 1.0
ASYNC_BACKOFF_MAX_S = 300.0

# --- shutdown --------------------------------------------------------------------------

#: On SIGTERM, how long running invocations get to finish before they are cut (their
#: callers then get ServiceException); the default of Config.shutdown_grace_s, settable
#: with --shutdown-grace / KINDLING_SHUTDOWN_GRACE_S. AWS: - (a Lambda host being retired
#: stops taking invokes and lets running ones end; 30 s is Kubernetes' default
#: terminationGracePeriodSeconds, what a supervisor of kindling is likely to allow).
SHUTDOWN_GRACE_S = 30.0

#: After the grace, how long the answers of cut invocations get to be written before the
#: connections close. AWS: -.
SHUTDOWN_ANSWER_S = 5.0
