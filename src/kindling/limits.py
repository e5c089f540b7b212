"""Every bound kindling puts on what a caller or a sandbox can make the server hold.

One place, so an operator reads all of them together, each beside the figure AWS
documents for the same thing (or "AWS: -" where AWS states none). A bound is charged to
the sandbox or the caller that uses it; the modules that enforce them import them from
here and nowhere else defines a second copy.

Lambda's own quotas (what a function may be configured with, what a request may carry)
come first, each with AWS's figure and AWS's wording ("Lambda quotas" in the Lambda
Developer Guide, or the API reference page named) beside it; docs/specification.md
lists them in a table that tests/test_specification.py checks against this module.
They are enforced where a request is understood (control/quotas.py, the invoke
service, the front end), which import them from here.

Sections: Lambda's quotas, front end (API callers), Runtime API (a sandbox's connections
to the server), logs, code uploads, sandbox resources, async queue, shutdown, sandbox
privileges, crash cleanup and reaping.
"""

from __future__ import annotations

# --- Lambda's quotas (docs/specification.md) ----------------------------------------

#: MemorySize, in MB. AWS: "Function memory allocation: 128 MB to 10,240 MB, in 1-MB
#: increments." Default 128 ("The default value is 128 MB", API_CreateFunction).
FUNCTION_MEMORY_MIN_MB = 128
FUNCTION_MEMORY_MAX_MB = 10_240
FUNCTION_MEMORY_DEFAULT_MB = 128
#: Timeout, in seconds. AWS: "Function timeout: 900 seconds (15 minutes)"; "The default
#: is 3 seconds. The maximum allowed value is 900 seconds" (API_CreateFunction).
FUNCTION_TIMEOUT_MIN_S = 1
FUNCTION_TIMEOUT_MAX_S = 900
FUNCTION_TIMEOUT_DEFAULT_S = 3
#: EphemeralStorage.Size (/tmp), in MB. AWS: "/tmp directory storage: Between 512 MB and
#: 10,240 MB, in 1-MB increments" (API_EphemeralStorage: "Valid Range: Minimum value of
#: 512. Maximum value of 10240.").
FUNCTION_EPHEMERAL_MIN_MB = 512
FUNCTION_EPHEMERAL_MAX_MB = 10_240
FUNCTION_EPHEMERAL_DEFAULT_MB = 512
#: Environment.Variables, as the JSON Lambda measures (the string its error quotes).
#: AWS: "Function environment variables: 4 KB, for all environment variables associated
#: with the function, in aggregate".
FUNCTION_ENVIRONMENT_BYTES = 4096
#: Layers one function may use. AWS: "Function layers: five layers"; "Cannot reference
#: more than 5 layers."
FUNCTION_LAYERS = 5
#: One function's resource-based policy (AddPermission's statements), as JSON. AWS:
#: "Function resource-based policy: 20 KB".
FUNCTION_POLICY_BYTES = 20 * 1024
#: A synchronous Invoke's payload. AWS: "Invocation payload (request and response): 6 MB
#: each for request and response (synchronous)"; past it: RequestEntityTooLargeException,
#: "Request must be smaller than 6291456 bytes for the InvokeFunction operation".
INVOKE_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
#: An Event invocation's payload. AWS: "For asynchronous invocations, the maximum payload
#: size is 1 MB" (API_Invoke, since 2025; 256 KB before). kindling keeps 256 KB: the
#: async queue holds ASYNC_DISPATCH_BATCH payloads in memory and a dead-letter queue of
#: an SQS server older than 2025 refuses messages over 256 KB (docs/specification.md).
INVOKE_ASYNC_PAYLOAD_BYTES = 256 * 1024
#: A .zip uploaded in the request (ZipFile). AWS: "Deployment package (.zip file archive)
#: size: 50 MB (zipped, when uploaded through the Lambda API or SDKs). Upload larger
#: files with Amazon S3." (GetAccountSettings' CodeSizeZipped: 52,428,800.) Enforced by
#: the request's size: the base64 of 50 MB is 69,905,068 bytes.
CODE_ZIPPED_BYTES = 50 * 1024 * 1024
#: A .zip's members together, unpacked. AWS: "250 MB: The maximum size of the contents
#: of a deployment package, including layers and custom runtimes. (unzipped)";
#: "Unzipped size must be smaller than 262144000 bytes". Also the bound of a function's
#: code and all its layers together: AWS's "Function code combined with layers exceeds
#: the maximum allowed size of 262144000 bytes. The actual size is N bytes."
CODE_UNZIPPED_BYTES = 262_144_000
#: Code storage of one account (functions' and layers' zips). AWS: "Storage for uploaded
#: functions (.zip file archives) and layers: 75 GB" (GetAccountSettings' TotalCodeSize:
#: 80,530,636,800). Reported, not enforced: kindling's disk is the operator's.
ACCOUNT_CODE_STORAGE_BYTES = 75 * 1024**3
#: Concurrent executions of one account (``--account-concurrency``,
#: KINDLING_ACCOUNT_CONCURRENCY). AWS: "Concurrent executions: 1,000" (a default quota).
ACCOUNT_CONCURRENCY = 1000
#: What reserved concurrency must leave to the other functions. AWS: "Lambda requires at
#: least 100 concurrent executions to remain unreserved" ("The request would reduce
#: UnreservedConcurrentExecution below its minimum value of [100].").
UNRESERVED_CONCURRENCY_MIN = 100

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
#: direct upload; past 70,167,211 bytes of request: RequestEntityTooLargeException,
#: "Request must be smaller than 70167211 bytes for the CreateFunction operation".
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

#: How long a readiness probe waits for one dependency (the store, the shared counter)
#: before it calls it failed: below Kubernetes' default probe timeout (1 s), so that the
#: prober gets our 503 naming the check instead of its own timeout. AWS: -
HEALTH_CHECK_TIMEOUT_S = 0.8

#: Open front-end connections in all; past it a new one is answered 503 and closed, so
#: the server keeps descriptors for sandboxes (the server runs with 20,000). AWS: -.
FRONTEND_MAX_CONNECTIONS = 8192

#: Open connections from one client address (a 1,000-invoke burst from one host fits;
#: on loopback every local client shares the one address). AWS: -.
FRONTEND_MAX_CONNECTIONS_PER_CLIENT = 2048

#: Requests read ahead of their answers on one connection (pipelining); further bytes
#: wait in the kernel until the connection catches up. AWS: - (ALB does not pipeline).
FRONTEND_MAX_PIPELINED = 8

#: Distinct inputs (operation and its header, path and query values; never a body) whose
#: validation is remembered, so that a client repeating an Invoke is not re-judged each
#: time; beyond it the oldest is forgotten and judged again when seen. AWS: -.
FRONTEND_VALIDATED_INPUTS = 4096

#: After a refusal (a 4xx answered at once) what the client still sends is read and
#: dropped for this long, or this many bytes, before the connection closes (both
#: servers): closing with unread bytes resets the connection, and a reset can destroy
#: the answer before the client reads it. AWS: - (nginx's lingering_close: 30 s).
HTTP_REFUSAL_LINGER_S = 2.0
HTTP_REFUSAL_LINGER_BYTES = 1024 * 1024

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

# --- response streaming (ADR 0032) ----------------------------------------------------

#: Bytes one streamed response may carry (InvokeWithResponseStream, a RESPONSE_STREAM
#: function URL); past it the stream ends with Function.ResponseSizeTooLarge and the rest
#: the runtime sends is dropped. AWS: "a 20 MB soft limit" when response streaming came
#: out (the issue's figure); AWS now documents up to 200 MB ("Response streaming for
#: Lambda functions"). A soft limit there, a named bound here.
STREAM_MAX_RESPONSE_BYTES = 20 * 1024 * 1024
#: The first bytes of a streamed response go at full speed; the rest at most at
#: STREAM_CAPPED_BYTES_PER_S. AWS: "The first 6 MB of your function's response payload
#: has uncapped bandwidth. After this initial burst, Lambda streams your response at a
#: maximum rate of 2 MBps" ("Bandwidth limits for response streaming").
STREAM_UNCAPPED_BYTES = 6 * 1024 * 1024
STREAM_CAPPED_BYTES_PER_S = 2 * 1024 * 1024
#: Streamed bytes held between a sandbox's Runtime API and the client (per stream,
#: at each hop): past it the sandbox's connection stops being read, so a slow client
#: slows the function instead of filling the server's memory. AWS: -.
STREAM_WINDOW_BYTES = 256 * 1024

#: RLIMIT_NOFILE (soft and hard) of every sandbox, set before its runtime starts, on
#: every start path. AWS: 1,024 file descriptors per execution environment.
SANDBOX_MAX_OPEN_FILES = 1024

# --- the platform's API from inside a sandbox (per sandbox, ADR 0035) ----------------

#: Connections one sandbox may hold open to kindling's API at its own 127.0.0.1:9000 (a
#: function's SDK keeps a pool of 10 per client; 32 leaves room for several clients).
#: AWS: - (Lambda's own API is reached over the network and rate-limited per account).
SANDBOX_PLATFORM_MAX_CONNECTIONS = 32

#: Request body bytes one sandbox's API connections hold at once: a 6 MB Invoke payload
#: twice over. A request that would hold more is answered 413 (so a CreateFunction
#: with a zip over ~12 MB cannot be sent from inside a function). AWS: -.
SANDBOX_PLATFORM_MAX_BUFFERED_BYTES = 16 * 1024 * 1024

#: Connections a cluster worker opens to each control node for its sandboxes' API calls
#: (worker/platform_proxy.py), apart from its heartbeats'; further calls wait. AWS: -.
WORKER_PLATFORM_FORWARD_CONNECTIONS = 64

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
#: the rest is dropped and one marker line says how much. Lines a JSON function's
#: ApplicationLogLevel filters out count too (each was parsed). AWS: - (no per-invocation
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

#: (CODE_UNZIPPED_BYTES and FUNCTION_LAYERS: Lambda's quotas, above.)
#: An S3 object fetched as code (CreateFunction's and PublishLayerVersion's S3Bucket and
#: S3Key, UpdateFunctionCode's): refused from its Content-Length past this, and its body
#: read no further (a store that lies about the length is cut off there), so no fetch
#: holds more in memory. AWS: no zipped bound from S3 (50 MB is direct uploads'); the
#: unzipped one holds, and a zip's stored bytes are at least its members' (deflate never
#: grows data by more than 5 bytes a 64 KiB block), so AWS's "Unzipped size must be
#: smaller than 262144000 bytes".
CODE_S3_OBJECT_BYTES = 262_144_000
#: S3 objects fetched at once, each in a thread of its own (botocore blocks); more wait.
#: Bounds the memory fetches hold together to twice the object bound. AWS: -.
CODE_S3_FETCHES = 2
#: Connect and read (per socket read) timeouts of one S3 call. AWS: - (the SDKs' are 60 s).
CODE_S3_TIMEOUTS_S = (5.0, 60.0)
#: One fetch, whole: a store that trickles its body is given up on past it. AWS: -
#: (250 MB at 1 MB/s takes 250 s).
CODE_S3_FETCH_S = 300.0
#: Bytes of an S3 body read at a time. AWS: -.
CODE_S3_CHUNK_BYTES = 1_048_576
#: S3 clients kept, one per signing region (callers choose regions freely); the least
#: recently used is closed past it. AWS: -.
CODE_S3_CLIENTS = 8
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
#: A zip stored in the store shared by control nodes (control/codetable.py) is not
#: deleted by any node's collection for this long after it was stored: the create or
#: update that stored it records its function a moment later (milliseconds; seconds on
#: a loaded host), and until then nothing references it. AWS: -
CODE_SHARED_PIN_S = 30.0
#: Bytes of unpacked code a worker host keeps of functions it ran: past it, the least
#: recently used tree no sandbox runs is dropped (fetched again if needed). 40 functions
#: at Lambda's largest (10 GB). AWS: -
WORKER_CODE_CACHE_BYTES = 40 * CODE_UNZIPPED_BYTES
#: A tree used this recently is kept even past the bound: a snapshot template of it may
#: still be forked (SNAPSHOT_TEMPLATE_IDLE_S), a create may be about to mount it. AWS: -
WORKER_CODE_MIN_IDLE_S = 1800.0

# --- sandbox resources -----------------------------------------------------------------

#: Processes and threads in one sandbox (its cgroup's pids.max): a fork bomb stops
#: there. AWS: 1,024 per execution environment.
SANDBOX_PIDS = 1024
#: SnapStart templates (initialized sandboxes that fork copies) one backend keeps; past
#: it the least recently used goes. AWS: - (snapshots live in its storage, not a host's
#: memory).
SNAPSHOT_TEMPLATES = 64
#: A template no start asked for in this long goes (its version is likely retired: an
#: update makes a new revision, hence a new template). AWS: - (a version's snapshot is
#: kept while the version is invoked at least once in 14 days).
SNAPSHOT_TEMPLATE_IDLE_S = 1800.0

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

#: Waits between the attempts to deliver one invocation record to a destination (or an
#: event to a dead-letter queue) that refused it or could not be reached; after the last
#: the record is logged in full and counted (kindling_async_delivery_failures_total).
#: The event stays stored meanwhile, so a kill -9 runs it again rather than losing the
#: record. AWS: - (it reports DestinationDeliveryFailures without saying how long it tries).
ASYNC_DELIVERY_DELAYS_S = (1.0, 4.0, 16.0)

#: What one attempt to reach a destination's API may take (connect, then the answer).
ASYNC_DELIVERY_TIMEOUTS_S = (5.0, 20.0)

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

#: What init leaves in a SnapStart template's /tmp is copied into each restored copy's
#: own /tmp (a snapshot includes the disk), by the host (worker/sandbox/copymounts.py):
#: whole, or, past any of these bounds, not at all (the copy's log says so). Bytes:
#: what a copy's start can afford to copy (~30 ms); entries and depth keep the host's
#: walk of a tree the function made short. AWS: - (a snapshot holds the whole 512 MB+
#: of /tmp).
SNAPSHOT_TMP_COPY_BYTES = 64 * 1024 * 1024
SNAPSHOT_TMP_COPY_ENTRIES = 10_000
SNAPSHOT_TMP_COPY_DEPTH = 64

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

# --- cluster: control nodes and workers -----------------------------------------------

#: How far a signed request's time may be from the receiver's clock (iam/cluster.py):
#: a captured request can be replayed at most this long. Hosts run NTP. AWS: - (SigV4
#: allows 5 minutes).
CLUSTER_CLOCK_SKEW_S = 60.0
#: The shortest cluster secret accepted (32 random bytes as hex is 64). AWS: -
CLUSTER_SECRET_MIN_BYTES = 32
#: A worker's request bodies: a spec (environment up to 4 KB, names) or a payload of
#: 6 MB, with room for the JSON around them. AWS: -
CLUSTER_MAX_BODY_BYTES = 6 * 1024 * 1024 + 64 * 1024
#: How long a control node waits for a worker's answer beyond the invocation's own
#: timeout or the init limit, before it calls the worker lost for this call. AWS: -
CLUSTER_ANSWER_SLACK_S = 30.0
#: Keep-alive connections a control node holds open to one worker: concurrent calls
#: beyond it wait for one to free up. AWS: -
CLUSTER_CONNECTIONS_PER_WORKER = 256
#: How often a worker host announces itself to the control plane. AWS: -
CLUSTER_HEARTBEAT_S = 1.0
#: A worker not heard from for this long is lost (its sandboxes forgotten, re-placed):
#: three missed heartbeats, so one late packet does not cost a host, and a dead host is
#: given up within the 5 s issue 20 asks. AWS: -
CLUSTER_LEASE_S = 3.0
#: Code digests one heartbeat may ask about (the trees a worker keeps that no sandbox
#: of its runs, least recently used first): one bounded query per heartbeat. AWS: -
CLUSTER_HEARTBEAT_DIGESTS = 4096

# --------------------------------------------------------------------------- the store

#: How long opening a connection to PostgreSQL may take before the request that needed
#: it fails with ServiceException: a store that is down or unreachable must answer an API
#: call within seconds, not hang it. libpq counts whole seconds (2 at least). AWS: -
STORE_CONNECT_TIMEOUT_S = 5
#: A TCP connection to PostgreSQL whose server stops acknowledging (a host that froze or
#: vanished from the network) is dropped after this long, instead of the kernel's ~15
#: minutes of retransmissions (libpq's tcp_user_timeout, and keepalives as often). A
#: statement is a few ms; a frozen server is found out within this bound. AWS: -
STORE_TCP_TIMEOUT_S = 10

#: How long a control node holds a stored Event invocation it took (PostgreSQL store):
#: it renews the lease every third of it while the event runs, so a node that dies
#: leaves its events to the others at most this long after. Shorter redoes a dead
#: node's events sooner, at the cost of a write per running event more often. AWS: -
ASYNC_LEASE_S = 30.0

# --- counting in Redis (cluster mode, ADR 0019) ----------------------------------------

#: How long one execution's slot outlives the last heartbeat of the node that holds it:
#: the most concurrency a crashed node can keep from the others, for this long. The
#: node renews its slots every third of it, so two missed heartbeats are survived.
#: AWS: - (its counting service is internal).
COUNTING_LEASE_TTL_S = 10.0
#: The longest an admission or a release waits for Redis before the invoke fails as
#: ServiceException (a Redis that is down refuses at once; this bounds one that hangs).
#: AWS: -
COUNTING_TIMEOUT_S = 2.0
#: Connections one node opens to Redis for admissions and releases (pub/sub has its
#: own); past them an admission waits for one, within COUNTING_TIMEOUT_S. AWS: -
COUNTING_CONNECTIONS = 64
#: Slots renewed by one script call of the heartbeat, so one call stays short and Redis
#: serves admissions between them. AWS: -
COUNTING_RENEW_BATCH = 500

# --- EventBridge (ADR 0033) -------------------------------------------------------
#: Targets per rule: EventBridge's quota ("Amazon EventBridge quotas": 5 per rule).
EVENTS_TARGETS_PER_RULE = 5
#: PutEvents' request limit: the entries' total size, 256 KB ("Amazon EventBridge
#: quotas"; sizes counted as "Calculating PutEvents event entry size" says).
EVENTS_MAX_PUT_BYTES = 256 * 1024
#: Compiled event patterns kept by their text: a rule's pattern is compiled once, not
#: per PutEvents; a bound so a caller's many rules cannot grow the server.
EVENTS_PATTERN_CACHE = 1024
#: Scheduled rules the scheduler fires per pass, soonest first (the rest on the next).
EVENTS_SCHEDULE_BATCH = 100
#: The longest the scheduler sleeps between looks at the store: a rule another control
#: node created is seen within this long.
EVENTS_SCHEDULE_POLL_S = 1.0
#: A missed fire older than this is not made up after a restart: EventBridge's default
#: retry policy keeps an event for 24 hours ("Retrying events" / MaximumEventAgeInSeconds).
EVENTS_MISSED_FIRE_MAX_AGE_S = 24 * 3600

#: How long a sandbox's execution-role credentials are valid (ADR 0036): longer than a
#: sandbox may live (Assignment's max lifetime, 4 h), so a sandbox is retired before
#: its credentials expire and its successor gets fresh ones: rotation by recycling.
FUNCTION_CREDENTIALS_S = 6 * 3600.0
#: How long one role session serves the new sandboxes of one function
#: (iam/function_credentials.py): issuing one per start put a store query on every
#: cold start's path. A sandbox still gets credentials valid 6 h less this.
FUNCTION_CREDENTIALS_REUSE_S = 60.0
#: Functions whose current session is remembered at once; past it, expired ones go.
FUNCTION_CREDENTIALS_CACHED = 4096

# --- event source mappings (ADR 0034) ----------------------------------------------------

#: Filters per mapping: AWS's default quota ("Control which events Lambda sends to your
#: function": "up to five different filters for a single event source mapping").
ESM_MAX_FILTERS = 5
#: How long a control node holds the poller lease of a mapping (cluster mode); it renews
#: it every third of this, so a dead node's mappings are polled again within it. AWS: -
ESM_LEASE_S = 15.0
#: How often a supervisor reads the mappings to start, stop or hand over pollers and to
#: finish their state transitions (Creating -> Enabled, ...). AWS: - (seconds on AWS too)
ESM_RECONCILE_S = 1.0
#: SQS long poll of one ReceiveMessage (AWS Lambda long-polls with the SQS maximum, 20 s;
#: shorter lets a poller see a change of its mapping sooner, at one more call per idle
#: poller per period). AWS: 20
ESM_SQS_WAIT_S = 5
#: Pollers a mapping starts with (AWS: "Lambda begins with five concurrent batches"),
#: growing by one per full batch up to its MaximumConcurrency or ESM_SQS_DEFAULT_MAX.
ESM_SQS_START_POLLERS = 5
#: The least time between two new pollers of one mapping: AWS adds "up to 300 more
#: concurrent invocations per minute" ("Understanding SQS scaling behavior"). AWS: 0.2
ESM_SQS_SCALE_UP_S = 0.2
#: Concurrent batches of one mapping without ScalingConfig.MaximumConcurrency. AWS scales
#: to 1,250 (account concurrency bounds it first); kindling bounds it by the threads one
#: supervisor gives SQS calls. AWS: 1250
ESM_SQS_DEFAULT_MAX = 50
#: Threads for blocking SQS calls (botocore is synchronous), per supervisor: a long poll
#: holds one for up to ESM_SQS_WAIT_S, so this bounds concurrent pollers of all mappings
#: of a node. AWS: -
ESM_SQS_THREADS = 64
#: Backoff of a poller whose source fails (down, deleted, refusing) or whose function is
#: throttled or gone: first and longest wait. AWS: - (Lambda backs off and resumes).
ESM_BACKOFF_FIRST_S = 0.5
ESM_BACKOFF_MAX_S = 30.0
#: Invocations of one held batch while its function is throttled, before the batch is
#: left to its visibility timeout and the poller backs off. AWS: -
ESM_THROTTLE_TRIES = 6

#: Seconds to open a connection to a broker (RabbitMQ, Kafka) before the mapping reports
#: a connection error and backs off. AWS: -.
ESM_BROKER_CONNECT_S = 10.0
#: An idle broker consumer checks this often that its queue still exists and its
#: connection is open (RabbitMQ cancels the consumer of a deleted queue quietly). AWS: -.
ESM_BROKER_IDLE_CHECK_S = 5.0
#: The batching window of a broker mapping whose MaximumBatchingWindowInSeconds is 0.
#: AWS: 500 ms for Amazon MQ and Kafka.
ESM_BROKER_DEFAULT_WINDOW_S = 0.5
#: How long a Kafka consumer may hold a batch (invoking, retrying a failed one) before
#: its group gives its partitions to another member: above Lambda's 15-minute function
#: timeout, so one slow invocation never costs the assignment. AWS: -.
ESM_KAFKA_MAX_POLL_INTERVAL_S = 1200.0
# --- Object-storage notifications (ADR 0042) --------------------------------------
#: The largest webhook body taken from an S3-compatible store: what it carries becomes
#: one Event invocation, whose payload Lambda caps at 256 KB (a MinIO record is about
#: 1-2 KB). Checked after the front end's own body bound. AWS: 256 KB (async payload).
S3_NOTIFY_MAX_BODY_BYTES = 256 * 1024
#: Event types one configuration names: S3 has about 30 kinds. AWS: -
S3_NOTIFY_MAX_EVENT_TYPES = 64

# --- EventBridge targets beyond Lambda (ADR 0042) ---------------------------------
#: The longest the delivery loop sleeps between looks at the outbox (a new delivery on
#: this node wakes it at once; one written by another control node waits this long).
EVENTS_DELIVERY_POLL_S = 1.0
#: Deliveries one pass claims and sends at once.
EVENTS_DELIVERY_BATCH = 50
#: A claimed delivery is another node's to take after this (its sender died).
EVENTS_DELIVERY_LEASE_S = 60.0
#: The longest wait between two attempts of a failing delivery: EventBridge backs off
#: exponentially within its 24 hours. AWS: -
EVENTS_DELIVERY_BACKOFF_MAX_S = 300.0
#: Buses an event may cross through event-bus targets before it is not sent on: a bound
#: on a rule loop between buses. AWS: - (EventBridge detects such loops itself).
EVENTS_MAX_BUS_HOPS = 5

# --- audit log of control-plane calls (ADR 0043) ------------------------------------------

#: How long an audit record is kept: CloudTrail's event history keeps management events
#: 90 days ("Working with CloudTrail event history").
AUDIT_RETENTION_S = 90 * 24 * 3600.0
#: At most this many records are kept per account whatever their age: a busy or hostile
#: tenant cannot grow the store without end (its oldest go first), nor push another
#: account's history out, as one bound shared by all would let it.
AUDIT_MAX_ROWS = 1_000_000
#: Records wait in memory at most this long before they are written, in one transaction
#: per batch: a call never waits for its audit write.
AUDIT_FLUSH_S = 0.5
#: Records waiting to be written, at most; past it (a store down for long) the oldest
#: waiting are dropped, counted and logged, rather than memory growing.
AUDIT_BUFFER_MAX = 50_000
#: How often records past their retention or the row bound are deleted.
AUDIT_PRUNE_S = 600.0
#: Records one query answers, at most (``kindling admin audit --limit``).
AUDIT_QUERY_MAX = 10_000
