"""kindling's runtime client for the managed Python runtimes (python3.11, 3.12, 3.13).

The platform starts this script inside a sandbox as ``<python> -u bootstrap.py`` with the
working directory set to LAMBDA_TASK_ROOT (or precompiled, ``<python> -u bootstrap.pyc``,
which saves compiling this file on every start: 10-15 ms). It imports the function's
handler (``_HANDLER``, "module.path.function"), then loops over the AWS Lambda Runtime API
2018-06-01 served at AWS_LAMBDA_RUNTIME_API: fetch the next event, call the handler, post
its result or error.
Error types and messages, the context object and the log format follow AWS's own client
(awslambdaric), so a function behaves here as it does on Lambda.

It uses the standard library only and never imports kindling. It is written for cold
start, because every millisecond spent here is added to every cold start of every Python
function:

* HTTP is spoken over a raw socket, one keep-alive connection, with a minimal HTTP/1.1
  client. ``http.client`` pulls in ``email``, ``urllib`` and more (~40 ms); even
  ``socket.py`` costs ~2.5 ms building its enums, so the C module ``_socket`` is used
  directly. The Runtime API is a tiny, trusted peer; a full HTTP stack buys nothing.
* ``logging`` (~8 ms) is not imported here. A meta-path hook installs Lambda's root log
  handler the moment the function or a library imports ``logging``, so functions that
  never log never pay for it.
* ``traceback`` is imported only when an error has to be reported.
"""

from __future__ import annotations

import _socket
import io
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from importlib.abc import Loader as _LoaderBase
    from importlib.machinery import ModuleSpec
    from types import ModuleType, TracebackType
    from typing import Any, NoReturn

    Handler = Callable[[Any, "LambdaContext"], Any]
    ErrorResult = dict[str, Any]
else:
    _LoaderBase = object

RUNTIME_PATH = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
XRAY_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
MAX_XRAY_CAUSE_BYTES = 1024 * 1024
PY_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
USER_AGENT = f"kindling-python/{PY_VERSION}"
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
INIT_ERROR_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function "
    "code. However, in rare cases, a Lambda runtime update can cause unexpected function "
    "behavior. For functions using managed runtimes, runtime updates can be triggered by a "
    "function change, or can be applied automatically. To determine if the runtime has been "
    "updated, check the runtime version in the INIT_START log entry. If this error correlates "
    "with a change in the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)


class RuntimeApiError(Exception):
    """The Runtime API is unreachable or refused a request: the sandbox has to end."""


class Fault(Exception):
    """An error the runtime itself reports, with a Lambda error type ("Runtime.*")."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


# --------------------------------------------------------------------------- HTTP/1.1


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-cased
        self.body = body


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, reopened once when the peer has dropped it."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RuntimeApiError(f"invalid AWS_LAMBDA_RUNTIME_API {address!r}")
        self._address = address
        self._host = host.strip("[]")
        self._port = int(port)
        self._sock: _socket.socket | None = None
        self._buf = bytearray()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        raw = self._encode(method, path, body, headers)
        try:
            return self._roundtrip(raw)
        except OSError:
            self.close()  # a kept-alive connection may have been closed meanwhile: retry once
        try:
            return self._roundtrip(raw)
        except OSError as exc:
            self.close()
            raise RuntimeApiError(f"Runtime API at {self._address} unreachable: {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf.clear()

    def _encode(
        self, method: str, path: str, body: bytes, headers: Iterable[tuple[str, str]]
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._address}", f"User-Agent: {USER_AGENT}"]
        if method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        for name, value in headers:
            value = value.replace("\r", " ").replace("\n", " ")  # no header injection
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _roundtrip(self, raw: bytes) -> Response:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(raw)
        return self._read_response()

    def _connect(self) -> _socket.socket:
        # A bytes host: a str one is run through the idna codec, 1.5 ms of imports.
        family, kind, proto, _, addr = _socket.getaddrinfo(
            self._host.encode(), self._port, 0, _socket.SOCK_STREAM
        )[0]
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(None)  # the long poll must not time out, whatever user code sets
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock

    def _read_response(self) -> Response:
        head = self._read_until(b"\r\n\r\n").decode("utf-8", "replace")
        status_line, *header_lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise RuntimeApiError(f"malformed response from the Runtime API: {status_line!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status = int(rest[:3])
        body = self._read_body(status, headers)
        if version == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    def _read_body(self, status: int, headers: dict[str, str]) -> bytes:
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return self._read_chunked()
            if "content-length" in headers:
                return self._read_exact(int(headers["content-length"]))
        except ValueError as exc:
            raise RuntimeApiError(f"malformed response from the Runtime API: {exc}") from exc
        if status < 200 or status in (204, 304):
            return b""
        return self._read_to_eof()

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self._read_until(b"\r\n").split(b";", 1)[0], 16):
            parts.append(self._read_exact(size))
            self._read_exact(2)
        while self._read_until(b"\r\n"):
            pass  # trailer fields, up to the blank line
        return b"".join(parts)

    def _read_until(self, delimiter: bytes) -> bytes:
        start = 0
        while (end := self._buf.find(delimiter, start)) < 0:
            start = max(0, len(self._buf) - len(delimiter) + 1)
            self._fill(65536)
        data = bytes(self._buf[:end])
        del self._buf[: end + len(delimiter)]
        return data

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill(max(65536, size - len(self._buf)))
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _read_to_eof(self) -> bytes:
        while chunk := self._recv(65536):
            self._buf += chunk
        data = bytes(self._buf)
        self.close()
        return data

    def _fill(self, size: int) -> None:
        chunk = self._recv(size)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self._buf += chunk

    def _recv(self, size: int) -> bytes:
        assert self._sock is not None
        return self._sock.recv(min(size, 1 << 22))


# --------------------------------------------------------------------------- Runtime API


class Invocation:
    """One event from GET /invocation/next."""

    __slots__ = (
        "body",
        "client_context",
        "cognito_identity",
        "deadline_ms",
        "function_arn",
        "request_id",
        "tenant_id",
        "trace_id",
    )

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        self.function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.trace_id = headers.get("lambda-runtime-trace-id")
        self.client_context = headers.get("lambda-runtime-client-context")
        self.cognito_identity = headers.get("lambda-runtime-cognito-identity")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        self.body = body


class RuntimeApi:
    """The Runtime API 2018-06-01 calls a runtime makes."""

    def __init__(self, connection: HttpConnection) -> None:
        self._conn = connection

    def next_invocation(self) -> Invocation:
        response = self._conn.request("GET", f"{RUNTIME_PATH}/invocation/next")
        if response.status != 200:
            raise RuntimeApiError(
                f"GET invocation/next returned {response.status}: {response.body[:512]!r}"
            )
        return Invocation(response.headers, response.body)

    def post_response(self, request_id: str, body: bytes, content_type: str) -> None:
        headers = [("Content-Type", content_type)]
        self._post(f"/invocation/{request_id}/response", body, headers)

    def post_error(self, request_id: str, error: ErrorResult, xray_cause: str) -> None:
        headers = [("Content-Type", "application/json"), (ERROR_TYPE_HEADER, "Unhandled")]
        if len(xray_cause) < MAX_XRAY_CAUSE_BYTES:
            headers.append((XRAY_CAUSE_HEADER, xray_cause))
        self._post(f"/invocation/{request_id}/error", json.dumps(error).encode(), headers)

    def post_init_error(self, error: ErrorResult) -> None:
        headers = [("Content-Type", "application/json"), (ERROR_TYPE_HEADER, error["errorType"])]
        self._post("/init/error", json.dumps(error).encode(), headers)

    def _post(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> None:
        response = self._conn.request("POST", RUNTIME_PATH + path, body, headers)
        if response.status >= 500:
            raise RuntimeApiError(f"POST {path} returned {response.status}: {response.body!r}")
        if response.status >= 300:  # e.g. 413 payload too large: the platform reports it
            sys.stderr.write(f"POST {path} returned {response.status}: {response.body!r}\n")


# --------------------------------------------------------------------------- context


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: dict[str, Any]) -> None:
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, client: dict[str, Any]) -> None:
        self.installation_id = client.get("installation_id")
        self.app_title = client.get("app_title")
        self.app_version_name = client.get("app_version_name")
        self.app_version_code = client.get("app_version_code")
        self.app_package_name = client.get("app_package_name")

    def __repr__(self) -> str:
        return (
            f"Client([installation_id={self.installation_id},app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, context: dict[str, Any]) -> None:
        client = context.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = context.get("custom")
        self.env = context.get("env")

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class LambdaContext:
    """The handler's ``context``: the attributes and methods of Lambda's LambdaContext."""

    def __init__(self, invocation: Invocation) -> None:
        env = os.environ
        client_context = _parse_json_header(invocation.client_context, "Client Context")
        cognito_identity = _parse_json_header(invocation.cognito_identity, "Cognito Identity")
        self.aws_request_id = invocation.request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str, as Lambda
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invocation.function_arn
        self.tenant_id = invocation.tenant_id
        self._w3c = _pop_w3c(client_context)
        self.client_context = None if client_context is None else ClientContext(client_context)
        self.identity = CognitoIdentity(cognito_identity or {})
        self._deadline_ms = invocation.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context (traceparent, tracestate, baggage) the caller passed."""
        return dict(self._w3c)

    def log(self, msg: object) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


def _parse_json_header(value: str | None, name: str) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        message = f"Unable to parse {name} JSON: {exc}"
        raise Fault("Runtime.LambdaContextUnmarshalError", message) from None
    if not isinstance(parsed, dict):
        message = f"Unable to parse {name} JSON: expected an object"
        raise Fault("Runtime.LambdaContextUnmarshalError", message)
    return parsed


def _pop_w3c(client_context: dict[str, Any] | None) -> dict[str, str]:
    raw = client_context.pop("w3c", None) if client_context else None
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in W3C_FIELDS if isinstance(raw.get(key), str)}


# --------------------------------------------------------------------------- payloads


class _ResponseEncoder(json.JSONEncoder):
    """json.dumps as Lambda's marshaller: NaN allowed, Decimal as a number, and non-ASCII
    text left as is from python3.12 on."""

    def default(self, o: object) -> object:
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(o, decimal.Decimal):
            return int(o) if o.is_finite() and o == o.to_integral_value() else float(o)
        return super().default(o)


RESPONSE_ENCODER = _ResponseEncoder(ensure_ascii=sys.version_info < (3, 12))


def decode_event(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from None


def encode_response(result: object) -> tuple[bytes, str]:
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return RESPONSE_ENCODER.encode(result).encode("utf-8"), "application/json"
    except Exception as exc:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


# --------------------------------------------------------------------------- errors


def make_error(message: str, error_type: str, trace: list[str], request_id: str) -> ErrorResult:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": trace,
    }


def user_frames(tb: TracebackType | None) -> list[tuple[str, int, str, str]]:
    """The traceback as (file, line, function, source) tuples, minus this file's frames."""
    import traceback

    this_file = user_frames.__code__.co_filename  # not __file__: that may be a .pyc
    frames = [(f.filename, f.lineno or 0, f.name, f.line or "") for f in traceback.extract_tb(tb)]
    while frames and frames[0][0] == this_file:
        del frames[0]
    return frames


def format_frames(frames: list[tuple[str, int, str, str]]) -> list[str]:
    import traceback

    return traceback.format_list(frames)


def describe_exception(exc: BaseException, request_id: str) -> tuple[ErrorResult, str]:
    """Lambda's error result and X-Ray cause for an exception raised by user code."""
    frames = user_frames(exc.__traceback__)
    error_type, message = type(exc).__name__, str(exc)
    error = make_error(message, error_type, format_frames(frames), request_id)
    return error, xray_cause(error_type, message, frames)


def xray_cause(error_type: str, message: str, frames: list[tuple[str, int, str, str]]) -> str:
    stack = [{"label": name, "path": path, "line": line} for path, line, name, _ in frames]
    exception = {"message": message, "type": error_type, "stack": stack}
    paths = list(dict.fromkeys(path for path, _, _, _ in frames))
    cause = {"working_directory": os.getcwd(), "exceptions": [exception], "paths": paths}
    return json.dumps(cause)


def log_error(error: ErrorResult) -> None:
    """Print an error result as Lambda does: one record, "[ERROR] Type: message" + trace."""
    description = "[ERROR]"
    if error["errorType"]:
        description += " " + error["errorType"] + (":" if error["errorMessage"] else "")
    if error["errorMessage"]:
        description += " " + error["errorMessage"]
    lines = [description, "Traceback (most recent call last):"]
    for element in error["stackTrace"]:
        lines.extend(element.splitlines() if element else [""])
    sys.stdout.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- init


def load_handler(handler: str) -> Handler:
    """Import the handler's module and return the function, or raise Lambda's init Fault."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}") from None
    module = import_user_module(module_name)
    try:
        function: Handler = getattr(module, function_name)
    except AttributeError:
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise Fault("Runtime.HandlerNotFound", message) from None
    return function


def import_user_module(name: str) -> ModuleType:
    if name.split(".")[0] in sys.builtin_module_names:
        message = f"Cannot use built-in module {name} as a handler module"
        raise Fault("Runtime.BuiltInModuleConflict", message)
    dotted = name.replace("/", ".")
    try:
        __import__(dotted)
    except ImportError as exc:
        message = f"Unable to import module '{name}': {exc}"
        raise Fault("Runtime.ImportModuleError", message) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        message = f"Syntax error in module '{name}': {exc}"
        raise Fault("Runtime.UserCodeSyntaxError", message, trace) from None
    return sys.modules[dotted]


def init_error_result(exc: Exception) -> ErrorResult:
    if isinstance(exc, Fault):
        return make_error(exc.message, exc.error_type, exc.trace, "")
    frames = user_frames(exc.__traceback__)
    return make_error(str(exc), type(exc).__name__, format_frames(frames), "")


def setup_sys_path(task_root: str) -> None:
    """LAMBDA_TASK_ROOT first, then the layers' directories; never this script's directory."""
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]
    layer_paths = [f"/opt/python/lib/python{PY_VERSION}/site-packages", "/opt/python"]
    sys.path[:0] = [task_root, *(path for path in layer_paths if os.path.isdir(path))]


def unbuffer_std_streams() -> None:
    """Output must reach the log before the response is posted (the runtime also flushes)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True, write_through=True)


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if not getattr(stream, "closed", False):  # user code may have closed or replaced it
            stream.flush()


# --------------------------------------------------------------------------- logging


class _ConfigureLoggingOnImport:
    """A meta-path finder that lets ``logging`` load normally, then runs a callback."""

    def __init__(self, configure: Callable[[], None]) -> None:
        self._configure = configure

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenRun(spec.loader, self._configure)
                return spec
        return None


class _ThenRun(_LoaderBase):
    """Wraps a loader: executes the module with it, then calls ``then``."""

    def __init__(self, loader: _LoaderBase, then: Callable[[], None]) -> None:
        self._loader = loader
        self._then = then

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._then()


def log_level_from_env() -> str:
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    return "DEBUG" if level == "TRACE" else level


def install_log_handler(runtime: Runtime) -> None:
    """Lambda's root logger set-up: a stdout handler with the request id in each record."""
    import logging

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.aws_request_id = runtime.request_id
            record.tenant_id = runtime.tenant_id
            return True

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sys.stdout.write(self.format(record))

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    level = log_level_from_env()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)
    root.addHandler(handler)


def install_logging_when_imported(runtime: Runtime) -> None:
    if "logging" in sys.modules:
        install_log_handler(runtime)
    else:
        sys.meta_path.insert(0, _ConfigureLoggingOnImport(lambda: install_log_handler(runtime)))


# --------------------------------------------------------------------------- main loop


class Runtime:
    """Initializes the function, then serves its invocations one at a time."""

    def __init__(self, api: RuntimeApi) -> None:
        self.api = api
        self.request_id = ""  # of the current invocation; read by the log filter
        self.tenant_id: str | None = None

    def initialize(self, handler_name: str) -> Handler | None:
        """The handler, or None once an init error has been reported."""
        try:
            return load_handler(handler_name)
        except Exception as exc:
            self.report_init_error(exc)
        return None

    def run_hooks(
        self, hooks: Iterable[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
    ) -> bool:
        """SnapStart runtime hooks; a failing one is reported like an init error."""
        try:
            for func, args, kwargs in hooks:
                func(*args, **kwargs)
        except Exception as exc:
            self.report_init_error(exc)
            return False
        return True

    def report_init_error(self, exc: Exception) -> None:
        error = init_error_result(exc)
        import logging

        logging.warning(INIT_ERROR_WARNING)
        log_error(error)
        flush_std_streams()
        self.api.post_init_error(error)

    def serve(self, handler: Handler) -> NoReturn:
        while True:
            self.invoke(handler, self.api.next_invocation())

    def invoke(self, handler: Handler, invocation: Invocation) -> None:
        request_id = invocation.request_id
        self.request_id, self.tenant_id = request_id, invocation.tenant_id
        set_trace_id(invocation.trace_id)
        try:
            context = LambdaContext(invocation)
            event = decode_event(invocation.body)
            body, content_type = encode_response(handler(event, context))
        except Fault as fault:
            error = make_error(fault.message, fault.error_type, fault.trace, request_id)
            cause = xray_cause(fault.error_type, fault.message, [])
        except Exception as exc:
            error, cause = describe_exception(exc, request_id)
        else:
            flush_std_streams()
            self.api.post_response(request_id, body, content_type)
            return
        log_error(error)
        flush_std_streams()
        self.api.post_error(request_id, error, cause)


def set_trace_id(trace_id: str | None) -> None:
    if trace_id is None:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    else:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id


class SnapshotHooks:
    """``snapshot_restore_py``, which Lambda's managed Python runtimes include: hooks run
    before a snapshot (in reverse order of registration) and after each restore (in
    order). Without a snapshot they never run, as on Lambda without SnapStart."""

    def __init__(self) -> None:
        self.before: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.after: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def module(self) -> ModuleType:
        module = type(sys)("snapshot_restore_py")
        module.register_before_snapshot = self._register(self.before)  # type: ignore[attr-defined]
        module.register_after_restore = self._register(self.after)  # type: ignore[attr-defined]
        module.get_before_snapshot = lambda: list(self.before)  # type: ignore[attr-defined]
        module.get_after_restore = lambda: list(self.after)  # type: ignore[attr-defined]
        return module

    @staticmethod
    def _register(hooks: list[Any]) -> Callable[..., Any]:
        def register(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
            hooks.append((func, args, kwargs))
            return func  # usable as a decorator

        return register


def main() -> int:
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
    try:
        connection = HttpConnection(address)
        runtime = Runtime(RuntimeApi(connection))
        unbuffer_std_streams()
        install_logging_when_imported(runtime)
        hooks = SnapshotHooks()
        sys.modules["snapshot_restore_py"] = hooks.module()
        setup_sys_path(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
        handler = runtime.initialize(os.environ.get("_HANDLER", ""))
        if handler is None:
            return 1
        template = globals().get("KINDLING_SNAPSHOT")  # set by the worker's zygote only
        if template is not None:
            if not runtime.run_hooks(reversed(hooks.before)):
                return 1
            flush_std_streams()
            connection.close()  # each copy opens its own, to its own Runtime API
            template.serve()  # returns in each restored copy, never in the template
            if not runtime.run_hooks(hooks.after):
                return 1
        runtime.serve(handler)
    except RuntimeApiError as exc:
        flush_std_streams()
        sys.stderr.write(f"[ERROR] kindling runtime: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
