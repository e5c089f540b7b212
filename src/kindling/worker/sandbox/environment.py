"""The standard environment of a Lambda execution environment, for every backend."""

from __future__ import annotations

from kindling.worker.sandbox.base import SandboxSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"


def lambda_environment(
    spec: SandboxSpec, runtime_api: str, task_root: str, endpoint: str | None = None
) -> dict[str, str]:
    """The variables Lambda sets, over the function's own (reserved names cannot be set).
    ``endpoint``: where kindling's API answers the sandbox (its SDK's ``AWS_ENDPOINT_URL``,
    unless the function set one itself: a user's value wins)."""
    env = dict(spec.environment)
    if endpoint is not None:
        env.setdefault("AWS_ENDPOINT_URL", endpoint)
    env.update(
        {
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": task_root,
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_INITIALIZATION_TYPE": spec.initialization_type,
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": spec.log_stream,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.launch.runtime}",
            "AWS_ACCESS_KEY_ID": spec.credentials.get("AWS_ACCESS_KEY_ID", "test"),
            "AWS_SECRET_ACCESS_KEY": spec.credentials.get("AWS_SECRET_ACCESS_KEY", "test"),
            "AWS_SESSION_TOKEN": spec.credentials.get("AWS_SESSION_TOKEN", ""),
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": env.get("PATH", DEFAULT_PATH),
            "LD_LIBRARY_PATH": env.get(
                "LD_LIBRARY_PATH", "/var/lang/lib:/lib64:/usr/lib64:/opt/lib"
            ),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if spec.log_format == "JSON":  # as Lambda sets them, for JSON only (ADR 0038)
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        env["AWS_LAMBDA_LOG_LEVEL"] = spec.application_log_level or "INFO"
    return env


def layers_without_opt(env: dict[str, str], spec: SandboxSpec) -> dict[str, str]:
    """Where /opt cannot be mounted (the process backend), the variables point at the
    layers' trees themselves, the last layer first so its files win as they would at
    /opt: their ``bin`` on PATH, ``lib`` on LD_LIBRARY_PATH and, for Python, their
    ``python`` and ``python/lib/pythonX.Y/site-packages`` on PYTHONPATH."""
    if not spec.layer_dirs:
        return env
    trees = list(reversed(spec.layer_dirs))
    out = dict(env)
    out["PATH"] = ":".join([*(f"{t}/bin" for t in trees), env["PATH"]])
    out["LD_LIBRARY_PATH"] = ":".join([env["LD_LIBRARY_PATH"], *(f"{t}/lib" for t in trees)])
    runtime = spec.launch.runtime
    if runtime.startswith("python"):
        version = runtime.removeprefix("python")
        paths = [
            p
            for t in trees
            for p in (f"{t}/python/lib/python{version}/site-packages", f"{t}/python")
        ]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        out["PYTHONPATH"] = ":".join(paths)
    return out
