"""Which Lambda runtimes this host can run, and how a sandbox starts each one.

Managed Python runtimes run our own runtime client (``python/bootstrap.py``) under a real
interpreter of that version found on the host: never a pyenv shim, whose start costs ten
times a real interpreter's. ``provided.*`` runtimes run the function's own ``bootstrap``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kindling.errors import ValidationError

PYTHON_RUNTIMES = {"python3.11": "3.11", "python3.12": "3.12", "python3.13": "3.13"}
PROVIDED_RUNTIMES = {"provided.al2023", "provided.al2"}
BOOTSTRAP = Path(__file__).parent / "python" / "bootstrap.py"


@dataclass(frozen=True, slots=True)
class RuntimeLaunch:
    """How to start one runtime: the argv prefix (before nothing else) and its family."""

    runtime: str
    family: str  # "python" | "provided"
    argv: tuple[str, ...]
    interpreter: str | None = None


def _is_real_binary(path: str) -> bool:
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x7fELF"


def find_python(version: str, extra: tuple[str, ...] = ()) -> str | None:
    """A real CPython X.Y binary: Debian's first, then pyenv's versions."""
    env_override = os.environ.get(f"KINDLING_PYTHON{version.replace('.', '_')}")
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [
        *(p for p in (env_override,) if p),
        *extra,
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
        *sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True),
    ]
    for path in candidates:
        if os.path.basename(path).startswith(f"python{version}") and _is_real_binary(path):
            return path
    return None


class RuntimeCatalog:
    """Resolves a runtime name to a launch recipe, or says clearly why it cannot."""

    def __init__(self, extra_pythons: tuple[str, ...] = (), cache_dir: Path | None = None) -> None:
        self._extra = extra_pythons
        self._cache_dir = cache_dir
        self._cache: dict[str, RuntimeLaunch] = {}
        self._builds: dict[str, str] = {}

    def supported(self) -> list[str]:
        return [*PYTHON_RUNTIMES, *sorted(PROVIDED_RUNTIMES)]

    def resolve(self, runtime: str) -> RuntimeLaunch:
        cached = self._cache.get(runtime)
        if cached is not None:
            return cached
        launch = self._resolve(runtime)
        self._cache[runtime] = launch
        return launch

    def build(self, runtime: str) -> str:
        """The runtime version a function of ``runtime`` runs on here, as the 64 hex
        digits of AWS's runtime version ARNs (``arn:aws:lambda:REGION::runtime:DIGEST``):
        the SHA-256 of the interpreter binary this host starts and of kindling's runtime
        client, so another build of either is another version. ``provided.*``: of the
        host's OS release, under the function's own bootstrap. Raises ValidationError
        where the runtime cannot run here."""
        cached = self._builds.get(runtime)
        if cached is not None:
            return cached
        launch = self.resolve(runtime)
        digest = hashlib.sha256(runtime.encode() + b"\0")
        parts: list[Path] = []
        if launch.interpreter is not None:
            parts = [Path(os.path.realpath(launch.interpreter))]
            parts += sorted(BOOTSTRAP.parent.glob("*.py"))
        elif os.path.exists("/etc/os-release"):
            parts = [Path("/etc/os-release")]
        for part in parts:
            with open(part, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        self._builds[runtime] = digest.hexdigest()
        return self._builds[runtime]

    def interpreters(self) -> list[str]:
        """Every Python interpreter this host has for a managed runtime."""
        found = (find_python(version, self._extra) for version in PYTHON_RUNTIMES.values())
        return [interpreter for interpreter in found if interpreter is not None]

    def _resolve(self, runtime: str) -> RuntimeLaunch:
        if runtime in PROVIDED_RUNTIMES:
            return RuntimeLaunch(runtime, "provided", ())
        version = PYTHON_RUNTIMES.get(runtime)
        if version is None:
            raise ValidationError(
                f"The runtime parameter of {runtime} is not supported by this kindling host. "
                f"Supported runtimes: {', '.join(self.supported())}"
            )
        interpreter = find_python(version, self._extra)
        if interpreter is None:
            raise ValidationError(
                f"The runtime {runtime} is not available on this host: no python{version} "
                f"interpreter was found in /usr/bin, /usr/local/bin or pyenv's versions "
                f"(set KINDLING_PYTHON{version.replace('.', '_')} to its path)."
            )
        client = self._compiled(interpreter, version)
        # -S: no host site-packages in a function (Lambda has none of ours either), and
        # 3 ms less per start.
        return RuntimeLaunch(runtime, "python", (interpreter, "-u", "-S", client), interpreter)

    def _compiled(self, interpreter: str, version: str) -> str:
        """The runtime client as bytecode of that interpreter, so no start compiles it again.

        Python never caches a script's bytecode; compiling bootstrap.py costs 10-17 ms,
        as much as the interpreter's own start. Its sibling modules are compiled beside
        it, sourceless (``name.pyc``), one directory per version: the script's directory
        is first on sys.path, so they import from there, and no other version's
        bytecode is in the way.
        """
        if self._cache_dir is None:
            return str(BOOTSTRAP)
        target_dir = self._cache_dir / f"python{version}"
        sources = sorted(p for p in BOOTSTRAP.parent.glob("*.py") if p.name != "__init__.py")
        targets = [target_dir / f"{source.stem}.pyc" for source in sources]
        newest = max(source.stat().st_mtime for source in sources)
        if any(not t.exists() or t.stat().st_mtime < newest for t in targets):
            target_dir.mkdir(parents=True, exist_ok=True)
            script = (
                "import py_compile, sys\n"
                "for source, target in zip(sys.argv[1::2], sys.argv[2::2]):\n"
                "    py_compile.compile(source, cfile=target, doraise=True)\n"
            )
            pairs = [str(x) for pair in zip(sources, targets, strict=True) for x in pair]
            done = subprocess.run(
                [interpreter, "-I", "-c", script, *pairs], capture_output=True, check=False
            )
            if done.returncode != 0:
                return str(BOOTSTRAP)
        return str(target_dir / "bootstrap.pyc")
