"""Checks the model's min/max/pattern/enum constraints the way Lambda reports them.

Lambda answers a constraint violation with ``ValidationException`` and a message such as
``1 validation error detected: Value '100' at 'memorySize' failed to satisfy constraint:
Member must have value greater than or equal to 128``. The constraints come from the
service model; only the wording is ours.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from kindling.errors import ConstraintError


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    if "\\p{" in pattern:  # Java Unicode classes; Python's re cannot judge them
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check_scalar(value: Any, shape: Any, where: str, out: list[str]) -> None:
    meta = shape.metadata
    shown = value if not isinstance(value, bytes | bytearray) else "<binary>"
    prefix = f"Value '{shown}' at '{where}' failed to satisfy constraint: Member must"
    if "enum" in meta and value not in meta["enum"]:
        out.append(f"{prefix} satisfy enum value set: [{', '.join(meta['enum'])}]")
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int | float) and shape.type_name in ("integer", "long", "float", "double"):
        if "min" in meta and value < meta["min"]:
            out.append(f"{prefix} have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            out.append(f"{prefix} have value less than or equal to {meta['max']}")
        return
    if isinstance(value, str) and shape.type_name == "string":
        if "min" in meta and len(value) < meta["min"]:
            out.append(f"{prefix} have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{prefix} have length less than or equal to {meta['max']}")
        regex = _regex(meta["pattern"]) if "pattern" in meta else None
        if regex is not None and regex.fullmatch(value) is None:
            out.append(f"{prefix} satisfy regular expression pattern: {meta['pattern']}")


def _walk(value: Any, shape: Any, where: str, out: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                path = f"{where}.{_camel(name)}" if where else _camel(name)
                _walk(value[name], member, path, out)
    elif kind == "list" and isinstance(value, list):
        meta = shape.metadata
        if "min" in meta and len(value) < meta["min"]:
            out.append(
                f"Value at '{where}' failed to satisfy constraint: Member must have length "
                f"greater than or equal to {meta['min']}"
            )
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{where}' failed to satisfy constraint: Member must have length "
                f"less than or equal to {meta['max']}"
            )
        for i, item in enumerate(value, 1):
            _walk(item, shape.member, f"{where}.{i}.member", out)
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _check_scalar(key, shape.key, f"{where}.{key}.key", out)
            _walk(item, shape.value, f"{where}.{key}.value", out)
    else:
        _check_scalar(value, shape, where, out)


def check_constraints(params: dict[str, Any], shape: Any) -> None:
    """Raises ConstraintError listing every violated constraint, as Lambda does."""
    problems: list[str] = []
    _walk(params, shape, "", problems)
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise ConstraintError(f"{count} validation {noun} detected: " + "; ".join(problems))
