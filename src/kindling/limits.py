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

#: What ``LogType=Tail`` returns: the last bytes of an invocation's log. AWS: 4 KB.
LOG_TAIL_BYTES = 4096
#: A longer line of output is split into lines of at most this many bytes. AWS: 256 KB,
#: CloudWatch Logs' largest event (262,144 bytes).
LOG_LINE_BYTES = 262_144
#: Output read from one sandbox's pipe in one turn of the event loop; the rest waits for
#: the next turn, so a sandbox that never stops writing cannot hold the loop. AWS: -.
LOG_DRAIN_BYTES = 1_048_576
#: Output one invocation (or one init, or one stretch between invocations) may log;
#: the rest is dropped and one marker line says how much. AWS: - (no per-invocation
#: figure; 1,048,576 is CloudWatch's PutLogEvents batch and the Logs API's largest
#: buffer).
LOG_INVOCATION_BYTES = 1_048_576
#: Bytes a second one function's log may grow by, over all its sandboxes, with up to a
#: segment (8 MiB) saved up for bursts; beyond, output is dropped and counted. Bounds
#: the disk writes one tenant causes (1 GB was written in 13 s). AWS: - (CloudWatch's
#: PutLogEvents takes 1 MiB a batch, 1,500 to 5,000 batches a second per account and
#: Region).
LOG_FUNCTION_BYTES_PER_S = 2 * 1024 * 1024
#: A function's log is kept in segments of this size... AWS: - (CloudWatch stores all).
LOG_SEGMENT_BYTES = 8 * 1024 * 1024
#: ...and at most this many of them: 32 MiB of log per function on disk; older lines
#: rotate away. AWS: - (CloudWatch stores all, billed per GB).
LOG_SEGMENTS_KEPT = 4
#: A segment not written for this long is deleted. AWS: CloudWatch's retention is a
#: setting (1 day to 10 years, default never expire); 7 days is one of its choices.
LOG_RETENTION_S = 7 * 24 * 3600
#: How often expired segments are looked for. AWS: -.
LOG_SWEEP_S = 300
#: Log bytes waiting for the writer thread, over all functions; beyond it output is
#: dropped and counted (one marker line per function says how much). AWS: -.
LOG_PENDING_BYTES = 8 * 1024 * 1024
#: Log files the writer keeps open at once (least recently written closed first). AWS: -.
LOG_OPEN_FILES = 64
#: Bytes one read of the logs endpoint returns (``kindling logs`` asks again). AWS: 1 MB,
#: GetLogEvents' largest answer.
LOG_READ_BYTES = 1_048_576
#: Reads of the logs endpoint served at once (each in a thread); more wait. AWS: -
#: (GetLogEvents: 25 requests a second per account and Region).
LOG_READERS = 2
#: The largest ``offset`` the logs endpoint accepts (a file offset is a signed 64-bit
#: number). AWS: -.
LOG_MAX_OFFSET = 2**63 - 1

# --- code uploads ----------------------------------------------------------------------

#: A .zip's members together, unpacked. AWS: 262,144,000 bytes (250 MB), same message.
CODE_UNZIPPED_BYTES = 262_144_000
#: Members in one .zip. AWS: - (none documented); 65,535 is what a zip without ZIP64
#: holds, more than a 250 MB node_modules has (~40,000), and bounds the inodes and the
#: time one upload costs.
CODE_ENTRIES = 65_535
#: Bytes of one component of a member's path. AWS: - (Linux's NAME_MAX, 255, on both).
CODE_NAME_BYTES = 255
#: Bytes of a member's whole path. AWS: - (Linux's PATH_MAX is 4,096 with the data
#: dir in front; 1,024 leaves it room).
CODE_PATH_BYTES = 1024
#: Uploads unpacked at once, each in a thread off the event loop; more wait. AWS: -.
CODE_UNPACK_WORKERS = 2
#: Code no function or version references any more is deleted this long after it was
#: replaced (at once when it was never used): an invocation that started on it may run
#: to its end. AWS: 900 s, Lambda's longest timeout.
CODE_COLLECT_GRACE_S = 900

# --- sandbox resources -----------------------------------------------------------------

# --- async queue -----------------------------------------------------------------------
