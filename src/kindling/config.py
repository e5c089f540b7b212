"""The one configuration object, read once from flags and environment at start."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from kindling import limits
from kindling.iam import cluster
from kindling.limits import SHUTDOWN_GRACE_S
from kindling.worker.sandbox.tuning import ColdStartTuning


@dataclass(frozen=True)
class Config:
    """Everything a deployment can choose; components receive the parts they need."""

    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: Path = Path(".kindling")
    #: Where state lives (--store, KINDLING_STORE): a ``postgresql://`` URL as libpq
    #: takes it, e.g. ``postgresql://kindling@/kindling?host=/run/postgresql``; None is
    #: the embedded default, an SQLite file in the data dir.
    store: str | None = None
    sandbox_backend: str = "namespace"
    #: The ``process`` backend runs functions as host root, unisolated: it exists only
    #: when the operator starts the server for it (``--unsafe-process-backend``, or
    #: ``--backend process``); no API caller can ever turn it on.
    unsafe_process_backend: bool = False
    #: Seconds an idle sandbox is kept warm before it is reaped (with the "adaptive"
    #: policy: until a function has shown enough gaps to learn from).
    keep_alive_s: float = 600.0
    #: "adaptive": learned per function from its idle times (falls back to keep_alive_s);
    #: "fixed": always keep_alive_s.
    keep_alive_policy: str = "adaptive"
    #: An idle sandbox is frozen (no CPU) after this long idle; 0 freezes at once.
    freeze_after_s: float = 0.02
    #: Account-wide concurrent executions (Lambda's default quota).
    account_concurrency: int = limits.ACCOUNT_CONCURRENCY
    #: Delays before the first and second retry of a failed Event invocation.
    async_retry_delays_s: tuple[float, ...] = (60.0, 120.0)
    #: Oldest an Event invocation may get before it is dropped (Lambda: 6 h).
    async_max_age_s: float = 21600.0
    #: On SIGTERM: seconds running invocations get to finish before they are cut (a
    #: second SIGTERM or SIGINT cuts them at once). --shutdown-grace,
    #: KINDLING_SHUTDOWN_GRACE_S.
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    #: Development only: $LATEST of a function with SnapStart ApplyOn=PublishedVersions
    #: starts from snapshots too (AWS snapshots published versions only).
    snapstart_latest: bool = False
    #: Cold-start work done ahead (KINDLING_ZYGOTES, KINDLING_LAUNCHER,
    #: KINDLING_SLOT_POOL, KINDLING_FAVOR_DYNMODS).
    tuning: ColdStartTuning = field(default_factory=ColdStartTuning)
    #: The front end's header, body and idle timeouts in seconds (KINDLING_HTTP_TIMEOUTS_S,
    #: "header,body,idle"), e.g. shorter behind a proxy that keeps its own.
    http_timeouts_s: tuple[float, float, float] = (
        limits.FRONTEND_HEADER_TIMEOUT_S,
        limits.FRONTEND_BODY_TIMEOUT_S,
        limits.FRONTEND_IDLE_TIMEOUT_S,
    )
    extra_python_paths: tuple[str, ...] = field(default_factory=tuple)
    #: Private IPv4 ranges sandboxes may reach (KINDLING_EGRESS_ALLOW, ``--egress-allow``);
    #: by default they reach public destinations only (ADR 0015).
    egress_allow: tuple[ipaddress.IPv4Network, ...] = ()
    #: "all": one process is the whole platform (the embedded default); "control": the
    #: API, store and placement, sandboxes on registered workers; "worker": sandboxes
    #: only, for the control plane at ``control_url`` (docs/cluster.md).
    role: str = "all"
    #: A worker's control plane (``--control``, KINDLING_CONTROL).
    control_url: str = ""
    #: The address control nodes reach this worker at (``--advertise``,
    #: KINDLING_ADVERTISE); by default its listening address.
    advertise_url: str = ""
    #: This host's name in the cluster (KINDLING_WORKER_ID); by default the hostname.
    worker_id: str = ""
    #: The secret every host of a cluster shares (KINDLING_CLUSTER_SECRET, or the
    #: file named by ``--cluster-secret-file`` / KINDLING_CLUSTER_SECRET_FILE).
    cluster_secret: str = field(default="", repr=False)
    #: A worker recycles itself after this many seconds (``--max-lifetime``,
    #: KINDLING_MAX_LIFETIME_S): it drains (no new sandbox, idle ones destroyed, running
    #: invocations finish, up to ``shutdown_grace_s``) and exits 0 for its supervisor to
    #: start it afresh, as Lambda recycles its workers. 0: never.
    max_lifetime_s: float = 0.0
    #: Where concurrent executions are counted: "" in this process (the embedded
    #: default); a ``redis://host:port/db`` URL in that Redis, one count for every node
    #: that names it (``--counting``, KINDLING_COUNTING; ADR 0019).
    counting: str = ""
    #: The dev account's key ``test``/``test`` (--dev-keys/--no-dev-keys,
    #: KINDLING_DEV_KEYS): None is on while the server listens on loopback only and off
    #: otherwise; True turns it on whatever the address (ADR 0036).
    dev_keys: bool | None = None
    #: The file of the server key that encrypts secrets at rest (--server-key-file,
    #: KINDLING_SERVER_KEY_FILE); by default ``server.key`` in the data dir, created 0600.
    #: Control nodes of one cluster share one.
    server_key_file: Path | None = None
    #: One line per request on the log (method, path, status, duration, request id,
    #: account): ``--access-log``, KINDLING_ACCESS_LOG. Off by default: when off the
    #: front end's handler is not wrapped at all (ADR 0040).
    access_log: bool = False
    #: The operator's registry of message brokers and their credentials for event
    #: source mappings (KINDLING_BROKERS_FILE; ADR 0041); by default ``brokers.json``
    #: in the data dir, read again at each connection.
    brokers_file: Path | None = None

    def __post_init__(self) -> None:
        # Absolute from the start: sandbox builders, launchers and zygotes run with other
        # working directories, so a relative data dir (the default ``.kindling``) would
        # name another place in each of them. Symlinks are resolved once, here, so that
        # the instance id derived from it is the same however the dir was named.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.role not in ("all", "control", "worker"):
            raise ValueError(f"--role is all, control or worker, not {self.role!r}")
        if self.role != "all" and not self.cluster_secret:
            raise ValueError(
                f"--role {self.role} needs the cluster secret: KINDLING_CLUSTER_SECRET or "
                "--cluster-secret-file (the same on every host; `openssl rand -hex 32`)"
            )
        if self.role == "control" and cluster.is_token(self.cluster_secret):
            raise ValueError(
                "a worker token cannot run a control node: control nodes take the cluster "
                "secret itself (`kindling cluster token` makes workers' tokens from it)"
            )
        if self.role == "worker" and not self.control_url:
            raise ValueError("--role worker needs --control http://<control host>:<port>")

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data_dir / 'kindling.db'}"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def loopback_only(self) -> bool:
        """Whether the server listens on loopback addresses only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def dev_keys_enabled(self) -> bool:
        return self.loopback_only if self.dev_keys is None else self.dev_keys

    @property
    def server_key_path(self) -> Path:
        return self.server_key_file or self.data_dir / "server.key"

    @property
    def brokers_path(self) -> Path:
        return self.brokers_file or self.data_dir / "brokers.json"

    @property
    def process_backend_enabled(self) -> bool:
        return self.unsafe_process_backend or self.sandbox_backend == "process"

    def describe(self) -> list[str]:
        """What this server is about to do, in the words of the start-up log: where its
        state is, which sandboxes, whether the dev key works, what an operator can probe.
        Passwords in URLs are hidden."""
        store = _hide_password(self.store) if self.store else f"SQLite {self.data_dir}/kindling.db"
        counting = _hide_password(self.counting) if self.counting else "in this process"
        if self.role == "control":
            sandboxes = "on registered workers"
        else:
            sandboxes = f"{self.sandbox_backend} backend"
            if self.unsafe_process_backend:
                sandboxes += " (process backend enabled: NOT ISOLATED, debugging only)"
        if self.dev_keys_enabled:
            why = "listening on loopback only" if self.dev_keys is None else "--dev-keys"
            dev = f"dev mode: key test/test signs as account 000000000000 ({why})"
        else:
            dev = "dev key off: accounts and keys come from `kindling admin`"
        return [
            f"data dir {self.data_dir}; store {store}; counting {counting}",
            f"role {self.role}; sandboxes {sandboxes}; {dev}",
            f"access log {'on' if self.access_log else 'off'}; probes GET /_kindling/health/"
            "live and /_kindling/health/ready; metrics GET /metrics",
        ]

    def with_overrides(self, **changes: object) -> Config:
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        base = cls()
        port = int(env.get("KINDLING_PORT", base.port))
        data_dir = Path(env.get("KINDLING_DATA_DIR", str(base.data_dir)))
        store = env.get("KINDLING_STORE") or base.store
        backend = env.get("KINDLING_SANDBOX_BACKEND", base.sandbox_backend)
        keep_alive = float(env.get("KINDLING_KEEP_ALIVE_S", base.keep_alive_s))
        policy = env.get("KINDLING_KEEP_ALIVE_POLICY", base.keep_alive_policy)
        freeze_after = float(env.get("KINDLING_FREEZE_AFTER_S", base.freeze_after_s))
        account_limit = int(env.get("KINDLING_ACCOUNT_CONCURRENCY", base.account_concurrency))
        unsafe = _flag(env, "KINDLING_UNSAFE_PROCESS_BACKEND", base.unsafe_process_backend)
        grace = float(env.get("KINDLING_SHUTDOWN_GRACE_S", base.shutdown_grace_s))
        snapstart_latest = env.get("KINDLING_SNAPSTART_LATEST", "0").strip().lower() in (
            "1",
            "true",
            "yes",
            "on",
        )
        tuning = ColdStartTuning(
            zygotes=_flag(env, "KINDLING_ZYGOTES", base.tuning.zygotes),
            launcher=_flag(env, "KINDLING_LAUNCHER", base.tuning.launcher),
            slot_pool=int(env.get("KINDLING_SLOT_POOL", base.tuning.slot_pool)),
            favor_dynmods=_flag(env, "KINDLING_FAVOR_DYNMODS", base.tuning.favor_dynmods),
        )
        delays = env.get("KINDLING_ASYNC_RETRY_DELAYS_S")
        retry = (
            tuple(float(x) for x in delays.split(",") if x.strip())
            if delays is not None
            else base.async_retry_delays_s
        )
        timeouts = env.get("KINDLING_HTTP_TIMEOUTS_S")
        header, body, idle = (
            (float(x) for x in timeouts.split(","))
            if timeouts is not None
            else base.http_timeouts_s
        )
        secret = env.get("KINDLING_CLUSTER_SECRET", "")
        secret_file = env.get("KINDLING_CLUSTER_SECRET_FILE")
        if not secret and secret_file:
            secret = read_secret_file(secret_file)
        dev_keys = env.get("KINDLING_DEV_KEYS")
        key_file = env.get("KINDLING_SERVER_KEY_FILE")
        return replace(
            base,
            dev_keys=None if dev_keys is None else _flag(env, "KINDLING_DEV_KEYS", False),
            server_key_file=Path(key_file) if key_file else base.server_key_file,
            access_log=_flag(env, "KINDLING_ACCESS_LOG", base.access_log),
            brokers_file=Path(env["KINDLING_BROKERS_FILE"])
            if env.get("KINDLING_BROKERS_FILE")
            else base.brokers_file,
            counting=parse_counting(env.get("KINDLING_COUNTING", base.counting)),
            role=env.get("KINDLING_ROLE", base.role),
            control_url=env.get("KINDLING_CONTROL", base.control_url),
            advertise_url=env.get("KINDLING_ADVERTISE", base.advertise_url),
            worker_id=env.get("KINDLING_WORKER_ID", base.worker_id),
            cluster_secret=secret,
            max_lifetime_s=float(env.get("KINDLING_MAX_LIFETIME_S", base.max_lifetime_s)),
            egress_allow=parse_egress_allow(env.get("KINDLING_EGRESS_ALLOW", "")),
            http_timeouts_s=(header, body, idle),
            port=port,
            data_dir=data_dir,
            store=store,
            sandbox_backend=backend,
            unsafe_process_backend=unsafe,
            keep_alive_s=keep_alive,
            freeze_after_s=freeze_after,
            keep_alive_policy=policy,
            account_concurrency=account_limit,
            async_retry_delays_s=retry,
            shutdown_grace_s=grace,
            snapstart_latest=snapstart_latest,
            tuning=tuning,
        )


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def read_secret_file(path: str) -> str:
    """The cluster secret from a file only its owner may read (a secret others can read
    is no secret: refused, with the fix)."""
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise ValueError(f"{path} is readable by others: chmod 600 {path}")
    with open(path) as fh:
        return fh.read().strip()


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_counting(text: str) -> str:
    """ "" (in process) or a Redis URL: ``redis://``, ``rediss://`` (TLS) or ``unix://``
    (a socket path), with an optional ``/db``. Anything else is an error at start, not
    at the first invoke."""
    text = text.strip()
    if not text:
        return ""
    url = urlsplit(text)
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"counting: {text!r} is not a redis://, rediss:// or unix:// URL")
    if url.scheme != "unix" and not url.hostname:
        raise ValueError(f"counting: {text!r} names no host")
    try:
        url.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError(f"counting: {text!r}: the port is a number") from None
    if url.scheme == "unix" and not url.path:
        raise ValueError(f"counting: {text!r} names no socket path")
    db = url.path.strip("/") if url.scheme != "unix" else ""
    if db and not db.isdigit():
        raise ValueError(f"counting: {text!r}: the database is a number")
    return text


def parse_egress_allow(text: str) -> tuple[ipaddress.IPv4Network, ...]:
    """``10.0.0.0/8,192.168.1.5``: comma-separated IPv4 ranges (host bits are an error,
    so a typo does not open more than meant). IPv6 is refused: sandboxes have none."""
    found = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item)
        except ValueError as exc:
            raise ValueError(f"egress allow-list: {exc}") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"egress allow-list: {item}: sandboxes have no IPv6 egress")
        found.append(network)
    return tuple(found)
