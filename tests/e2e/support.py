"""Helpers of the end-to-end suite: a real ``kindling serve`` process, zips, the AWS CLI,
raw SigV4-signed requests, and response-shape checks against botocore's Lambda model.

The fixtures that use these live in ``conftest.py``; tests import the plain helpers from
here (``from .support import ...``).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.metadata
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from botocore.response import StreamingBody
from botocore.validate import ParamValidator

BIN = Path(sys.executable).parent
KINDLING = BIN / "kindling"
AWS_CLI = BIN / "aws"
REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/e2e"
#: Factories the fixtures hand out: boto3 clients, and deployed function names.
ClientFactory = Callable[..., Any]
Deploy = Callable[..., str]
MODEL = botocore.session.get_session().get_service_model("lambda")
#: Why a test that reads a sandbox's metrics (invocations, errors, start kinds, their
#: series) runs on a single node only (the e2e ``server`` fixture's cluster topology,
#: conftest.py): a control node counts concurrency and throttles, workers the rest.
METRICS_ON_WORKERS = "a sandbox's metrics are its worker's GET /metrics, not the control node's"

# --------------------------------------------------------------------------- processes


def _stat_fields(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], rest[19]


def _alive(pid: int, started: str) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[1] == started and fields[0] not in ("Z", "X")


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (not root itself), by pid -> start time."""
    found: dict[int, str] = {}
    queue = [root]
    while queue:
        pid = queue.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    for child in map(int, children):
                        fields = _stat_fields(child)
                        if fields is not None and child not in found:
                            found[child] = fields[1]
                            queue.append(child)
    return found


def working_in(directory: Path) -> dict[int, str]:
    """Processes whose working directory is inside ``directory`` (sandboxes run in it)."""
    root = str(directory.resolve())
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            fields = _stat_fields(int(entry))
            if fields is not None:
                found[int(entry)] = fields[1]
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lambda_client(endpoint: str, config: Any = None) -> Any:
    """A boto3 Lambda client of the dev account (key test/test) for ``endpoint``;
    ``config``: a botocore Config (retries, timeouts) when the default will not do."""
    import boto3

    return boto3.session.Session().client(
        "lambda",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


@dataclass
class Server:
    """One ``kindling serve`` subprocess on a free port with its own data dir."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: More ``kindling serve`` options, e.g. ``("--host", "0.0.0.0")``.
    extra_args: tuple[str, ...] = ()
    #: More environment for the server, e.g. ``{"KINDLING_SNAPSTART_LATEST": "1"}``.
    env: dict[str, str] = field(default_factory=dict)
    #: The address it listens on (``--host`` unless loopback) and is reached at.
    host: str = "127.0.0.1"
    #: A command the server runs under, e.g. ``("ip", "netns", "exec", NS)`` (which
    #: execs it: the process is still the server's).
    wrap: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            host = () if self.host == "127.0.0.1" else ("--host", self.host)
            self.proc = subprocess.Popen(
                [
                    *self.wrap,
                    str(KINDLING),
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *host,
                    *self.extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kindling serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"kindling serve did not listen in {timeout}s")
            time.sleep(0.02)

    def stop(self, grace: float = 45.0) -> tuple[int, dict[int, str]]:
        """SIGTERM, then SIGKILL after ``grace`` (above the server's own drain grace, 30 s by
        default); returns (exit code, leftover processes).

        A leftover is any process the server had started (its descendants just before
        the signal) or any process working inside the data dir (a runtime), still alive
        a few seconds after the server exited.
        """
        proc = self.proc
        assert proc is not None
        watched = {**descendants(proc.pid), **working_in(self.data_dir)}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        deadline = time.monotonic() + 5.0
        while True:
            watched.update(working_in(self.data_dir))
            leftovers = {p: s for p, s in watched.items() if _alive(p, s)}
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for pid in leftovers:  # never leave them behind, even when the test fails
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return proc.returncode, leftovers

    def kill_hard(self) -> None:
        """kill -9 of the server and, at once, of every process it was running."""
        proc = self.proc
        assert proc is not None
        doomed = {**descendants(proc.pid), **working_in(self.data_dir)}
        proc.kill()
        proc.wait(10)
        doomed.update(working_in(self.data_dir))
        for pid, started in doomed.items():
            if _alive(pid, started):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def stop_cleanly(self) -> None:
        """Stops the server and asserts it exited 0 on SIGTERM and left no process."""
        code, leftovers = self.stop()
        assert code == 0, f"kindling serve exited {code} on SIGTERM:\n{self.log_tail()}"
        details = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            for pid in leftovers
            if Path(f"/proc/{pid}/cmdline").exists()
        }
        assert not leftovers, f"runtime processes outlived the server: {details}"


# --------------------------------------------------------------------------- zips

FileSpec = str | bytes | tuple[str | bytes, int]


def make_zip(files: Mapping[str, FileSpec]) -> bytes:
    """A zip of {path: content or (content, unix mode)}; modes are kept in external_attr.

    Dates are fixed, so the same files always give the same bytes (and CodeSha256).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, spec in files.items():
            content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
            if not stat.S_IFMT(mode):
                mode |= stat.S_IFREG
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode() if isinstance(content, str) else content
            archive.writestr(info, data)
    return buffer.getvalue()


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or []:
        if ";" in requirement and "extra" in requirement.split(";", 1)[1]:
            continue
        found = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if found:
            names.append(found.group(0))
    return names


def site_packages_files(*dists: str, prefix: str = "") -> dict[str, FileSpec]:
    """The installed files of ``dists`` and their (non-extra) dependencies, for a zip."""
    out: dict[str, FileSpec] = {}
    seen: set[str] = set()
    queue = list(dists)
    while queue:
        name = queue.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            rel = str(file)
            if rel.startswith("..") or "__pycache__" in rel:
                continue
            source = Path(str(dist.locate_file(file)))
            mode = source.stat().st_mode & 0o777
            out[prefix + rel] = (source.read_bytes(), mode)
        queue.extend(_requirement_names(dist))
    return out


# --------------------------------------------------------------------------- shapes

_validator = ParamValidator()


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if k != "ResponseMetadata" and not isinstance(v, StreamingBody)
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def shape_errors(operation: str, document: Mapping[str, Any]) -> str | None:
    """What is wrong with ``document`` as the output of ``operation``, or None."""
    shape = MODEL.operation_model(operation).output_shape
    if shape is None:
        extra = set(_clean(dict(document)))
        return f"{operation} has no output, got {sorted(extra)}" if extra else None
    report = _validator.validate(_clean(dict(document)), shape)
    return report.generate_report() if report.has_errors() else None


def assert_shape(operation: str, response: Mapping[str, Any]) -> None:
    """Asserts a parsed boto3 (or AWS CLI) response conforms to the operation's output."""
    problem = shape_errors(operation, response)
    assert problem is None, f"{operation} response does not match the model: {problem}"


class WireShapeRecorder:
    """A ``before-parse`` hook: checks every 2xx JSON body exactly as it came off the wire.

    The SDK drops members it does not know while parsing, so unknown or misplaced
    members can only be seen here.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []

    def __call__(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] >= 300 or operation_model.has_streaming_output:
            return
        name = operation_model.name
        body = response_dict["body"]
        shape = operation_model.output_shape
        try:
            document = json.loads(body) if body.strip() else {}
        except ValueError:
            self.violations.append(f"{name}: body is not JSON: {body[:200]!r}")
            return
        if shape is None:
            if document:
                self.violations.append(f"{name}: expected no body, got {body[:200]!r}")
            return
        placed = {
            k for k, m in shape.members.items() if m.serialization.get("location") is not None
        }
        misplaced = placed & set(document)
        if misplaced:
            self.violations.append(f"{name}: header/status members in the body: {misplaced}")
        report = _validator.validate(document, shape)
        if report.has_errors():
            self.violations.append(f"{name}: {report.generate_report()}")


# --------------------------------------------------------------------------- errors


@contextlib.contextmanager
def client_error(code: str, status: int) -> Iterator[pytest.ExceptionInfo[ClientError]]:
    """Expects a boto3 call to fail with this AWS error code and HTTP status."""
    with pytest.raises(ClientError) as info:
        yield info
    response = info.value.response
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    assert response["Error"].get("Message"), f"no useful message: {response}"


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self, operation: str = "Invoke") -> dict[str, Any]:
        """The error as botocore itself reads it from this response."""
        parser = create_parser("rest-json")
        parsed: dict[str, Any] = parser.parse(
            {"status_code": self.status, "headers": self.headers, "body": self.body},
            MODEL.operation_model(operation).output_shape,
        )
        return dict(parsed.get("Error") or {})


def assert_raw_error(response: RawResponse, code: str, status: int) -> None:
    assert response.status == status, (response.status, response.body[:500])
    error = response.error()
    assert error.get("Code") == code, (error, response.headers, response.body[:500])
    assert error.get("Message"), f"no useful message: {response.body[:500]!r}"


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    sign: bool = True,
    access_key: str = "test",
    secret: str = "test",
    region: str = REGION,
    timeout: float = 30.0,
    wire_body: bytes | None = None,
) -> RawResponse:
    """One HTTP request, SigV4-signed by botocore unless ``sign`` is False.

    ``wire_body``, when given, is sent instead of the ``body`` that was signed.
    """
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    if body and "Content-Type" not in request.headers:
        request.headers["Content-Type"] = "application/json"
    if sign:
        SigV4Auth(Credentials(access_key, secret), "lambda", region).add_auth(request)
    host = endpoint.split("://", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        sent = body if wire_body is None else wire_body
        conn.request(method, path, body=sent or None, headers=dict(request.headers.items()))
        reply = conn.getresponse()
        data = reply.read()
        found = {k.lower(): v for k, v in reply.getheaders()}
        return RawResponse(reply.status, found, data)
    finally:
        conn.close()


def function_log(endpoint: str, name: str) -> str:
    """Everything kindling logged for a function so far (``GET /_kindling/logs/NAME``)."""
    response = raw_request(endpoint, "GET", f"/_kindling/logs/{name}?offset=0")
    assert response.status == 200, (response.status, response.body[:500])
    return response.body.decode("utf-8", "replace")


# --------------------------------------------------------------------------- AWS CLI


class AwsCli:
    """Runs ``aws --endpoint-url ... lambda ...`` (or another ``service``) with the dev
    credentials."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE="/nonexistent/kindling-e2e",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent/kindling-e2e",
            AWS_MAX_ATTEMPTS="1",
        )
        self.env = env

    @functools.cached_property
    def major_version(self) -> int:
        done = subprocess.run(
            [str(AWS_CLI), "--version"], env=self.env, capture_output=True, text=True, check=True
        )
        found = re.search(r"aws-cli/(\d+)\.", done.stdout + done.stderr)
        assert found, done
        return int(found.group(1))

    def raw_payload_args(self) -> list[str]:
        """``--cli-binary-format raw-in-base64-out`` where the CLI has it (v2; v1 sends
        blobs raw already and refuses the option)."""
        return ["--cli-binary-format", "raw-in-base64-out"] if self.major_version >= 2 else []

    def run(
        self, *args: str, cwd: Path | None = None, service: str = "lambda"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AWS_CLI), "--endpoint-url", self.endpoint, "--output", "json", service, *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def json(self, *args: str, cwd: Path | None = None, service: str = "lambda") -> Any:
        done = self.run(*args, cwd=cwd, service=service)
        assert done.returncode == 0, f"aws {service} {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    __call__ = json


# --------------------------------------------------------------------------- polling


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Polls ``check`` until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_active(lam: Any, name: str, timeout: float = 15.0) -> dict[str, Any]:
    """Polls GetFunctionConfiguration until State is Active and no update is running."""

    def settled() -> dict[str, Any] | None:
        config: dict[str, Any] = lam.get_function_configuration(FunctionName=name)
        assert config["State"] in ("Pending", "Active"), config
        done = config["State"] == "Active" and config.get("LastUpdateStatus") != "InProgress"
        return config if done else None

    result: dict[str, Any] = wait_for(settled, timeout)
    return result


def invoke_json(
    lam: Any, name: str, event: Any = None, **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    """Invokes synchronously; returns (decoded payload, the response)."""
    payload = json.dumps({} if event is None else event).encode()
    response: dict[str, Any] = lam.invoke(FunctionName=name, Payload=payload, **kwargs)
    assert_shape("Invoke", response)
    body = response["Payload"].read()
    return (json.loads(body) if body else None), response
