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

#: Request line target (path and query). 16 KiB holds every Lambda path with a long
#: ARN and a full query; past it the answer is 414. AWS: ALB answers 414 past 16 KiB of
#: request line; API Gateway caps request line and headers together at 10 KiB.
FRONTEND_MAX_URL_BYTES = 16 * 1024

#: All header names and values of one request. A SigV4 request with a session token
#: and a base64 ClientContext (3,583 bytes at most) stays far below; past it: 431.
#: AWS: ALB answers 431 past 64 KiB of headers (16 KiB for any one header).
FRONTEND_MAX_HEADER_BYTES = 64 * 1024

#: One request body: CreateFunction's 50 MB zip, base64 in JSON. AWS: 50 MB zipped
#: direct upload (the base64 of it is 70,167,211 bytes with its JSON around it).
FRONTEND_MAX_BODY_BYTES = 70_167_211

#: Seconds from a request's first byte until its head is complete (slowloris). AWS: -
#: (ALB and CloudFront close such connections; CloudFront waits 10 s between packets).
FRONTEND_HEADER_TIMEOUT_S = 30.0

#: Seconds from a complete head until its body is complete: a 70 MB upload at ~1 MB/s.
#: AWS: - (the SDKs' own read/connect timeouts are 60 s).
FRONTEND_BODY_TIMEOUT_S = 120.0

#: Seconds a kept-alive connection may sit idle between requests. AWS: ALB's default
#: idle timeout is 60 s; botocore keeps pooled connections and reconnects on close.
FRONTEND_IDLE_TIMEOUT_S = 60.0

#: Open front-end connections in all; past it a new one is answered 503 and closed, so
#: the server keeps descriptors for sandboxes (the server runs with 20,000). AWS: -.
FRONTEND_MAX_CONNECTIONS = 8192

#: Open connections from one client address (a 1,000-invoke burst from one host fits;
#: on loopback every local client shares the one address). AWS: -.
FRONTEND_MAX_CONNECTIONS_PER_CLIENT = 2048

#: Requests read ahead of their answers on one connection (pipelining); further bytes
#: wait in the kernel until the connection catches up. AWS: - (ALB does not pipeline).
FRONTEND_MAX_PIPELINED = 8

# --- Runtime API (per sandbox) -------------------------------------------------------

#: One body sent to the Runtime API: /response, /error and /init/error alike. AWS: the
#: synchronous response limit, 6 MB, which Lambda enforces as 6,291,556 bytes (the
#: runtime gets 413 and the caller Function.ResponseSizeTooLarge); error payloads too.
RUNTIME_API_MAX_BODY_BYTES = 6 * 1024 * 1024 + 100

#: Body bytes one sandbox may have the server hold at once over all its connections
#: (one response and one error in flight, with room for small requests); past it the
#: request is refused 413. AWS: - (the limits above, per invocation).
RUNTIME_API_MAX_BUFFERED_BYTES = 2 * RUNTIME_API_MAX_BODY_BYTES + 1024 * 1024

#: Request target and header bytes of one Runtime API request (the runtime sends a few
#: short headers; an error type or X-Ray cause at most some KiB). AWS: -.
RUNTIME_API_MAX_URL_BYTES = 4 * 1024
RUNTIME_API_MAX_HEADER_BYTES = 64 * 1024

#: Connections one sandbox may hold to its Runtime API; more are closed at once. A
#: runtime uses one or two, each extension (AWS: up to 10 per function) a few. AWS: -.
RUNTIME_API_MAX_CONNECTIONS = 64

#: Seconds a Runtime API request may take to send its head, then its body. The runtime
#: sends both at once; a sandbox frozen mid-request finds its connection closed. AWS: -.
RUNTIME_API_HEADER_TIMEOUT_S = 30.0
RUNTIME_API_BODY_TIMEOUT_S = 60.0

#: Seconds a Runtime API connection may sit idle between requests: longer than the
#: longest invocation (900 s), since a runtime may keep a second connection unused for
#: the length of one. AWS: -.
RUNTIME_API_IDLE_TIMEOUT_S = 960.0

#: Requests one Runtime API connection may have read ahead of their answers. AWS: -.
RUNTIME_API_MAX_PIPELINED = 4

#: RLIMIT_NOFILE (soft and hard) of every sandbox, set before its runtime starts, on
#: every start path. AWS: 1,024 file descriptors per execution environment.
SANDBOX_MAX_OPEN_FILES = 1024

# --- logs ------------------------------------------------------------------------------

# --- code uploads ----------------------------------------------------------------------

# --- sandbox resources -----------------------------------------------------------------

# --- async queue -----------------------------------------------------------------------
