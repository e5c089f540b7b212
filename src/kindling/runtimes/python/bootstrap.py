"""kindling's runtime client for the managed Python runtimes (python3.11, 3.12, 3.13).

The platform starts this script inside a sandbox as ``<python> -u -S bootstrap.pyc``
(precompiled for that interpreter by the runtime catalog, which saves compiling this file
on every start: 10-17 ms; ``bootstrap.py`` itself if it could not be compiled) with the
working directory set to LAMBDA_TASK_ROOT; a runtime zygote imports it once and starts
it in each sandbox it forks. It imports the function's
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
  never log never pay for it. Its JSON format (LoggingConfig JSON: AWS_LAMBDA_LOG_FORMAT)
  lives in ``kindling_json_logging``, which a Text function never imports.
* ``traceback`` is imported only when an error has to be reported.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

# siblings, precompiled beside this file (the platform puts their directory first on
# sys.path, and takes it off again before the function's code is imported)
TYPE_CHECKING = False
if TYPE_CHECKING:  # the type checker knows them by their package
    from kindling.runtimes.python.kindling_lambda_context import (
        Fault,
        LambdaContext,
        decode_event,
        encode_response,
    )
    from kindling.runtimes.python.kindling_runtime_api import (
        ERROR_BODY_TRAILER,
        ERROR_TYPE_HEADER,
        PY_VERSION,
        HttpConnection,
        Invocation,
        RuntimeApi,
        RuntimeApiError,
    )
else:
    from kindling_lambda_context import Fault, LambdaContext, decode_event, encode_response
    from kindling_runtime_api import (
        ERROR_BODY_TRAILER,
        ERROR_TYPE_HEADER,
        PY_VERSION,
        HttpConnection,
        Invocation,
        RuntimeApi,
        RuntimeApiError,
    )

#: LoggingConfig's JSON format: its formatter is loaded for a JSON function only, here
#: (while this script's directory is still on sys.path), and in a runtime zygote (which
#: preloads this module under another name), so that its forks find it loaded whatever
#: their format. A Text function pays one environment lookup.
json_logging: ModuleType | None = None
if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON" or (
    __name__ == "kindling_runtime_preload"
):
    if TYPE_CHECKING:
        from kindling.runtimes.python import kindling_json_logging as json_logging
    else:
        import kindling_json_logging as json_logging

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from importlib.abc import Loader as _LoaderBase
    from importlib.machinery import ModuleSpec
    from types import ModuleType, TracebackType
    from typing import Any, NoReturn

    Handler = Callable[[Any, "LambdaContext"], Any]
    ErrorResult = dict[str, Any]
else:
    _LoaderBase = object

#: The content type of a streamed response that starts with an HTTP prelude (Node's
#: ``awslambda.HttpResponseStream``).
HTTP_PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
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
    """Print an error result as Lambda does: one record, "[ERROR] Type: message" + trace
    (one JSON record with the JSON log format)."""
    if json_format() and json_logging is not None:
        sys.stdout.write(json_logging.error_line(error))
        return
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
    """LAMBDA_TASK_ROOT first, then the layers' directories, then the AWS SDK the runtime
    ships (``<runtime dir>/sdk``: a copy the function bundles itself wins, as on Lambda);
    never this script's directory."""
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]
    layer_paths = [f"/opt/python/lib/python{PY_VERSION}/site-packages", "/opt/python"]
    # a zygote imported this file on the host: inside the sandbox its runtime directory
    # is LAMBDA_RUNTIME_DIR; the process backend runs it where it lies
    runtime_dirs = [os.environ.get("LAMBDA_RUNTIME_DIR", ""), os.path.dirname(here)]
    sdk = [p for p in (os.path.join(d, "sdk") for d in runtime_dirs if d) if os.path.isdir(p)]
    sys.path[:0] = [task_root, *(path for path in layer_paths if os.path.isdir(path)), *sdk[:1]]


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


def json_format() -> bool:
    """Whether the function's LoggingConfig asks for JSON logs (read each time: a zygote's
    fork gets its function's environment after this module was loaded)."""
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


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
    if json_format() and json_logging is not None:
        handler.setFormatter(json_logging.JsonFormatter())
    else:
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
            result = handler(event, context)
            if hasattr(result, "__next__"):  # a generator: a streaming handler
                self.stream(request_id, result)
                return
            body, content_type = encode_response(result)
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

    def stream(self, request_id: str, chunks: Iterator[Any]) -> None:
        """Streams what a generator handler yields (kindling's streaming handler, see
        docs/usage.md; AWS's Python runtime has none). Each item is bytes or str; a
        dict first is the HTTP prelude of a function URL (statusCode, headers, cookies),
        sent as Node's ``HttpResponseStream.from`` sends it: JSON, then 8 NUL bytes. An
        exception before the first item is an ordinary error; after it, the trailers
        carry it, as AWS's streaming protocol does."""
        sending = None
        try:
            for item in chunks:
                if sending is None:
                    content_type = "application/octet-stream"
                    if isinstance(item, dict):
                        content_type = HTTP_PRELUDE_CONTENT_TYPE
                        item = json.dumps(item).encode() + b"\0" * 8
                    flush_std_streams()
                    sending = self.api.stream_response(request_id, content_type)
                if isinstance(item, str):
                    item = item.encode("utf-8")
                if not isinstance(item, bytes | bytearray):
                    raise Fault(
                        "Runtime.MarshalError",
                        f"A streaming handler yields bytes or str, not {type(item).__name__}",
                    )
                sending.write(bytes(item))
        except Fault as fault:
            error = make_error(fault.message, fault.error_type, fault.trace, request_id)
        except Exception as exc:
            error, _cause = describe_exception(exc, request_id)
        else:
            flush_std_streams()
            if sending is None:  # yielded nothing: an empty response
                self.api.post_response(request_id, b"", "application/octet-stream")
            else:
                sending.finish()
            return
        log_error(error)
        flush_std_streams()
        if sending is None:
            self.api.post_error(request_id, error, "")
            return
        import binascii

        encoded = binascii.b2a_base64(json.dumps(error).encode(), newline=False).decode()
        sending.finish(
            [(ERROR_TYPE_HEADER, str(error["errorType"])), (ERROR_BODY_TRAILER, encoded)]
        )


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
    for sibling in ("kindling_lambda_context", "kindling_runtime_api", "kindling_json_logging"):
        sys.modules.pop(sibling, None)  # the function's namespace is its own
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
