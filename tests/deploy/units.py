"""Reading deploy/systemd/ as systemd does, enough to run a unit's ExecStart= as a plain
process: its [Service] settings in order (a key may repeat), EnvironmentFile= and
Environment= (files override), the specifiers the units use (%d, %S, %%), LoadCredential=
and StateDirectory= made in a temporary root, and ExecStart='s ${VAR} expansion.

Anything the units use that this does not know fails the test (an unknown specifier, a
$VAR in ExecStart=), so a unit cannot grow a setting the run tests silently ignore."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
UNITS = ("kindling-control.service", "kindling-worker.service")
ENV_EXAMPLE = SYSTEMD / "kindling.env.example"
#: systemd's PATH for services (systemd.exec(5), "Environment variables in spawned processes").
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Every section's settings in order, a backslash at the end of a line joining the next."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = found.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: a setting before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a setting: {line}"
        current.append((key.strip(), value.strip()))
    return found


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in sections(path).get(section, []) if k == key]


def value(path: Path, section: str, key: str) -> str | None:
    """The effective value of a setting given once (the last one if repeated)."""
    found = values(path, section, key)
    return found[-1] if found else None


def env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it (KEY=value lines; # and ; comment lines)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, val = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}: {line!r}"
        assert not val.startswith(("'", '"')), f"{path}: keep values unquoted: {line!r}"
        env[key] = val
    return env


def commented_keys(path: Path) -> set[str]:
    """Settings shown but commented out (``#KEY=value``)."""
    return set(re.findall(r"^#([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.M))


@dataclass
class Emulated:
    """What systemd would start: argv, environment, and the uid it runs as."""

    argv: list[str]
    env: dict[str, str]
    uid: int | None  # None: root, as the unit does not name a user
    state: Path
    credentials: Path
    settings: list[tuple[str, str]] = field(default_factory=list)


def specifiers(text: str, credentials: Path, state: Path) -> str:
    def one(match: re.Match[str]) -> str:
        spec = match.group(1)
        known = {"d": str(credentials), "S": str(state), "%": "%"}
        assert spec in known, f"a specifier these tests do not emulate: %{spec}"
        return known[spec]

    return re.sub(r"%(.)", one, text)


def emulate(unit: Path, root: Path, files: dict[str, Path], dynamic_uid: int) -> Emulated:
    """Lays out ``root`` as systemd would for ``unit`` (state and credentials directories)
    and returns the process to start. ``files`` maps the unit's paths (EnvironmentFile=,
    LoadCredential= sources, ExecStart='s program) to this test's."""
    settings = sections(unit)["Service"]
    conf = dict(settings)
    uid = dynamic_uid if conf.get("DynamicUser") == "yes" else None
    assert conf.get("User") in (None, "kindling"), "a user these tests do not emulate"
    state = root / "state"
    credentials = root / "credentials" / unit.name
    state.mkdir(parents=True, exist_ok=True)
    credentials.mkdir(parents=True)
    env = {"PATH": SERVICE_PATH}
    file_env: dict[str, str] = {}
    for key, val in settings:
        if key == "Environment":
            for word in shlex.split(specifiers(val, credentials, state)):
                name, _, assigned = word.partition("=")
                env[name] = assigned
        elif key == "EnvironmentFile":
            optional = val.startswith("-")
            source = files.get(val.lstrip("-"))
            assert source is not None or optional, f"no file given for {val}"
            if source is not None:
                file_env.update(env_file(source))
        elif key == "LoadCredential":
            name, _, source_path = val.partition(":")
            target = credentials / name
            target.write_bytes(files[source_path].read_bytes())
            target.chmod(0o400)
            if uid is not None:
                os.chown(target, uid, uid)
        elif key == "StateDirectory":
            for name in val.split():
                directory = state / name
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(int(conf.get("StateDirectoryMode", "0755"), 8))
                if uid is not None:
                    os.chown(directory, uid, uid)
    env.update(file_env)  # "settings from these files override settings of Environment="
    credentials.chmod(0o500)
    if uid is not None:
        os.chown(credentials, uid, uid)
    argv = []
    for word in shlex.split(specifiers(conf["ExecStart"], credentials, state)):
        assert "$" not in word.replace("${", ""), f"$VAR splitting is not emulated: {word}"
        argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word))
    argv[0] = str(files[argv[0]])
    return Emulated(argv, env, uid, state, credentials, settings)


def flag(argv: list[str], name: str) -> str:
    """The value after ``name`` in ``argv`` (which must hold it once)."""
    assert argv.count(name) == 1, f"{name} once in {argv}"
    return argv[argv.index(name) + 1]


def set_flag(argv: list[str], name: str, new: str) -> None:
    argv[argv.index(name) + 1] = new
