"""Real engines for the tests, started from Debian's packages in temporary directories:
PostgreSQL and Redis, as bench/engines.py starts them (the bench's cluster runs on them
too, and bench never imports tests). Shared engine fixtures live in tests/conftest.py.

moto's server (``MotoServer``): the SQS/SNS/EventBridge/S3 APIs of a user's account, for
the places kindling delivers to (destinations, dead-letter queues); one for the session
on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.engines import PG_ROOT, PG_USER, Postgres, RedisServer, pg_bin

__all__ = ["PG_ROOT", "PG_USER", "MotoServer", "Postgres", "RedisServer", "pg_bin"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """moto's server (PyPI ``moto[server]``, a test dependency) on a free loopback port: a
    real SQS/SNS/EventBridge/S3 API that stands in for a user's queue or bucket. One for
    the session; tests keep apart by queue names of their own. ``env`` is what a kindling
    server needs to reach it through the standard AWS configuration (endpoint URLs per
    service, credentials from the environment), as a user's deployment would set it."""

    SERVICES = ("SQS", "SNS", "EVENTBRIDGE", "S3", "KINESIS", "DYNAMODB", "DYNAMODB_STREAMS")
    #: The account its resources belong to: kindling's dev account, so the ARNs a test
    #: configures name them as a user's would.
    ACCOUNT = "000000000000"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

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

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None, "already running"
        for _ in range(5):  # a free port may be taken between the probe and the bind
            port = _free_port()
            log = open(self.directory / "moto.log", "ab")  # noqa: SIM115 - the child keeps it
            with log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env={**os.environ, "MOTO_ACCOUNT_ID": self.ACCOUNT},
                )
            if self._answers(port, timeout):
                self.port = port
                return
            self.stop()
        raise AssertionError(f"moto's server did not start:\n{self.log_tail()}")

    def _answers(self, port: int, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2.0) as answer,
            ):
                if answer.status == 200:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "moto.log").read_text(errors="replace")[-size:]
        return ""
