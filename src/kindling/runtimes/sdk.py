"""The AWS SDK for Python in the managed Python runtimes, as Lambda ships it (ADR 0035).

Lambda's Python runtimes carry boto3 and botocore, so a handler imports them without
bundling; a copy in the function's own code (or a layer) comes first on ``sys.path``
and wins. kindling gives every Python sandbox the boto3 this server itself runs with
(pinned by the lock file), read-only at ``/var/runtime/sdk``: a tree of the SDK's
packages in the runtime directory every backend already shows at ``/var/runtime``, so
no mount is added to any start path.

The tree is built once per host and SDK version in a cache (hard links to the server's
own installed files, so it costs no space) and compiled there for every Python the host
has, so no sandbox compiles botocore (seconds) on import; each server then links that
tree into its runtime directory (a few hundred milliseconds at start). A function that
never imports boto3 pays one more ``sys.path`` entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

#: boto3 and everything it imports (its dependency closure on PyPI).
PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
#: Where the tree is, inside the runtime directory (and so at /var/runtime/sdk).
DIRECTORY = "sdk"


def default_cache() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/kindling/sdk")
    return Path.home() / ".cache" / "kindling" / "sdk"


def version() -> str:
    """The SDK this server runs with: what every sandbox gets."""
    boto3, botocore = (importlib.metadata.version(name) for name in ("boto3", "botocore"))
    return f"boto3-{boto3}-botocore-{botocore}"


def _sources() -> list[Path]:
    found = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"the SDK package {name} is not installed with kindling")
        origin = Path(spec.origin)
        found.append(origin.parent if origin.name == "__init__.py" else origin)
    return found


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(
            source,
            target / source.name,
            copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        _link_or_copy(str(source), str(target / source.name))


def _build(cache: Path, interpreters: Iterable[str]) -> Path:
    """The host's tree for this SDK version, compiled by each interpreter (once)."""
    root = cache / version()
    tree = root / "python"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # servers starting together build it once
        if not tree.exists():
            building = root / f"python.{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            for source in _sources():
                _copy(source, building)
            building.rename(tree)
        for interpreter in sorted(set(interpreters)):
            marker = root / f".compiled-{Path(interpreter).name}-{_identity(interpreter)}"
            if marker.exists():
                continue
            done = subprocess.run(
                [interpreter, "-I", "-m", "compileall", "-q", "-j", "0", str(tree)],
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                log.warning(
                    "the SDK could not be compiled by %s: %s", interpreter, done.stderr[-500:]
                )
                continue
            marker.touch()
    return tree


def _identity(interpreter: str) -> str:
    info = os.stat(os.path.realpath(interpreter))
    return f"{info.st_ino}-{int(info.st_mtime)}"


def prepare(
    runtime_dir: Path, interpreters: Iterable[str], cache: Path | None = None
) -> Path | None:
    """Links the SDK tree into ``runtime_dir``/sdk; returns it, or None (logged) when
    this host cannot give one (the packages missing, no writable cache)."""
    target = runtime_dir / DIRECTORY
    try:
        tree = _build(cache or default_cache(), interpreters)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        runtime_dir.mkdir(parents=True, exist_ok=True)
        staging = runtime_dir / f".{DIRECTORY}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(tree, staging, copy_function=_link_or_copy)
        staging.rename(target)
    except (OSError, RuntimeError) as exc:
        log.warning("Python functions get no AWS SDK: %s", exc)
        return None
    return target
