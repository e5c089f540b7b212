"""The error payloads Lambda returns when the platform, not the function, ends an invocation."""

from __future__ import annotations

import json

from kindling.worker.sandbox.base import InvokeResult, Outcome


def _payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def timed_out(request_id: str, timeout_s: float, duration_ms: float) -> InvokeResult:
    message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
    return InvokeResult(
        Outcome.TIMEOUT, _payload("Sandbox.Timedout", message), duration_ms, "Unhandled"
    )


def exit_status_text(returncode: int | None) -> str:
    if returncode is None:
        return "unknown"
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name.removeprefix("SIG").lower()
        except ValueError:
            name = str(-returncode)
        return "signal: killed" if name == "kill" else f"signal: {name}"
    return f"exit status {returncode}"


def runtime_exited(
    request_id: str,
    returncode: int | None,
    duration_ms: float,
    error_type: str = "Runtime.ExitError",
) -> InvokeResult:
    message = (
        f"RequestId: {request_id} Error: Runtime exited with error: {exit_status_text(returncode)}"
    )
    return InvokeResult(Outcome.CRASH, _payload(error_type, message), duration_ms, "Unhandled")


def bad_entrypoint(paths: list[str], detail: str) -> InvokeResult:
    message = f"Couldn't find valid bootstrap(s): [{' '.join(paths)}]"
    if detail:
        message += f": {detail}"
    return InvokeResult(
        Outcome.INIT_ERROR, _payload("Runtime.InvalidEntrypoint", message), 0.0, "Unhandled"
    )


def out_of_memory(request_id: str, duration_ms: float) -> InvokeResult:
    message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    return InvokeResult(
        Outcome.CRASH, _payload("Runtime.OutOfMemory", message), duration_ms, "Unhandled"
    )
