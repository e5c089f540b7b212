"""What the Python runtime client's tests share: a fake Runtime API served in-process,
a function in a temporary task root run by bootstrap.py under each managed Python this
host has, and the fixtures that make them."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "src/kindling/runtimes/python/bootstrap.py"
RUNTIME = "/2018-06-01/runtime"
JSON = "application/json"
TIMEOUT = 20.0


def _interpreters() -> list[Any]:
    params = []
    for version, pattern in [
        ("3.11", "/usr/bin/python3.11"),
        ("3.12", "/root/.pyenv/versions/3.12*/bin/python3.12"),
        ("3.13", "/root/.pyenv/versions/3.13*/bin/python3.13"),
    ]:
        found = sorted(glob.glob(pattern))
        if found:
            params.append(pytest.param(found[-1], id=f"py{version}"))
        else:
            reason = f"no python{version} interpreter matching {pattern}"
            params.append(pytest.param(pattern, id=f"py{version}", marks=pytest.mark.skip(reason)))
    return params


@pytest.fixture(params=_interpreters())
def interpreter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------- fake API


@dataclass
class Posted:
    kind: str  # "response" | "error" | "init_error"
    request_id: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeRuntimeApi:
    """Hands out queued events on /invocation/next and records everything posted."""

    events: queue.Queue[tuple[dict[str, str], bytes, dict[str, Any]]] = field(
        default_factory=queue.Queue
    )
    posted: queue.Queue[Posted] = field(default_factory=queue.Queue)
    next_clients: list[tuple[str, int]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def take(self) -> Posted:
        try:
            return self.posted.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("the runtime posted nothing") from None


def _make_handler(api: FakeRuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != f"{RUNTIME}/invocation/next":
                self._reply(404, b"{}")
                return
            api.next_clients.append(self.client_address)
            while not api.stopping.is_set():
                try:
                    headers, body, options = api.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._send_event(headers, body, options)
                return
            with contextlib.suppress(OSError):  # the client is usually gone by now
                self._reply(500, b'{"errorType":"ShuttingDown"}')

        def _send_event(
            self, headers: dict[str, str], body: bytes, options: dict[str, Any]
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            if options.get("close") == "announced":
                self.send_header("Connection", "close")
            self.close_connection = bool(options.get("close"))  # "silent": just hang up
            if options.get("chunked"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 7):
                    piece = body[i : i + 7]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            parts = self.path.removeprefix(RUNTIME + "/").split("/")
            if parts == ["init", "error"]:
                kind, request_id = "init_error", ""
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                kind, request_id = parts[2], parts[1]
            else:
                self._reply(404, b"{}")
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            api.posted.put(Posted(kind, request_id, headers, body, self.client_address))
            self._reply(202, b'{"status":"OK"}')

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def api() -> Iterator[tuple[FakeRuntimeApi, int]]:
    fake = FakeRuntimeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, server.server_address[1]
    fake.stopping.set()
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- sandbox


class Function:
    """A function's task root plus the bootstrap process serving it."""

    def __init__(self, interpreter: str, tmp_path: Path, api: FakeRuntimeApi, port: int) -> None:
        self.interpreter = interpreter
        self.task_root = tmp_path / "task"
        self.task_root.mkdir()
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        self.api = api
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, files: dict[str, str]) -> None:
        for name, source in files.items():
            path = self.task_root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)

    def start(self, handler: str = "app.handler", *, pyc: bool = False, **env: str) -> None:
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}",
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "AWS_LAMBDA_FUNCTION_NAME": "my-function",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/my-function",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]abc",
            **env,
        }
        script = self._compile_bootstrap() if pyc else BOOTSTRAP
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [self.interpreter, "-u", str(script)],
                cwd=self.task_root,
                env=environ,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    def _compile_bootstrap(self) -> Path:
        """bootstrap.py as bytecode, as a platform may launch it to skip compiling it."""
        compiled = self.task_root.parent / "compiled"
        code = "import py_compile, sys; py_compile.compile(sys.argv[1], sys.argv[2], doraise=True)"
        for source in BOOTSTRAP.parent.glob("*.py"):  # its siblings too, sourceless beside it
            if source.name != "__init__.py":
                target = compiled / f"{source.stem}.pyc"
                subprocess.run([self.interpreter, "-c", code, str(source), str(target)], check=True)
        return compiled / "bootstrap.pyc"

    def invoke(
        self, event: Any = None, headers: dict[str, str] | None = None, **options: Any
    ) -> tuple[str, Posted]:
        request_id = str(uuid.uuid4())
        all_headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": (
                "arn:aws:lambda:us-east-1:000000000000:function:my-function"
            ),
            **(headers or {}),
        }
        body = options.pop("raw_body", None)
        if body is None:
            body = json.dumps({} if event is None else event).encode()
        self.api.events.put((all_headers, body, options))
        posted = self.api.take()
        assert posted.request_id == request_id
        return request_id, posted

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=TIMEOUT)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def function(
    interpreter: str, tmp_path: Path, api: tuple[FakeRuntimeApi, int]
) -> Iterator[Function]:
    fn = Function(interpreter, tmp_path, *api)
    yield fn
    fn.stop()
