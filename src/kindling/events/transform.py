"""What a rule's target receives: the event itself, ``Input``, ``InputPath`` or
``InputTransformer`` (EventBridge API reference, "Target"; user guide, "Amazon
EventBridge input transformation", eb-transform-target-input.html).

- ``Input``: the given JSON text, as is, instead of the event;
- ``InputPath``: the part of the event a JSONPath names (dot notation and array
  indices, the subset EventBridge evaluates);
- ``InputTransformer``: ``InputPathsMap`` names values of the event, ``InputTemplate``
  places them as ``<name>``. In a template that is JSON, a placeholder inside a string
  gets the value's text (a string without its quotes), one outside a string the value as
  JSON; a placeholder in a plain-text template gets the value's text. A path that names
  nothing gives ``null`` (outside a string) or nothing (inside one). The predefined
  variables ``aws.events.rule-arn``, ``aws.events.rule-name``,
  ``aws.events.event.ingestion-time`` and ``aws.events.event.json`` are provided.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kindling.errors import ValidationError

_MISSING = object()
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+|\*)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
#: Names EventBridge reserves (InputPathsMap keys may not start with "AWS.").
PREDEFINED = (
    "aws.events.rule-arn",
    "aws.events.rule-name",
    "aws.events.event.ingestion-time",
    "aws.events.event",
    "aws.events.event.json",
)


def check_path(path: str, member: str) -> None:
    """A path EventBridge can evaluate; else ValidationException, as PutTargets says."""
    if path == "$":
        return
    if not path.startswith("$") or _STEP.sub("", path[1:]) != "":
        raise ValidationError(f"{member} must be a valid JSON path: {path!r} is not.")


def check_target_input(target: dict[str, Any]) -> None:
    """At most one of Input, InputPath and InputTransformer, each well formed."""
    given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
    if len(given) > 1:
        raise ValidationError(
            "Only one of Input, InputPath, or InputTransformer must be provided for a target."
        )
    if "Input" in given:
        try:
            json.loads(target["Input"])
        except (ValueError, RecursionError):
            raise ValidationError("Input must be valid JSON text.") from None
    if "InputPath" in given:
        check_path(target["InputPath"], "InputPath")
    if "InputTransformer" in given:
        transformer = target["InputTransformer"]
        for name, path in (transformer.get("InputPathsMap") or {}).items():
            if name.lower().startswith("aws."):
                raise ValidationError(
                    f"InputTransformer: the key {name!r} is reserved: keys cannot start "
                    "with 'AWS.'."
                )
            check_path(path, f"InputPathsMap value for {name}")


def select_path(document: Any, path: str) -> Any:
    """The value ``path`` names in ``document``, or ``_MISSING``."""
    value = document
    for name, index in _STEP.findall(path[1:]):
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
        elif name == "*":
            if isinstance(value, dict):
                value = list(value.values())
            elif not isinstance(value, list):
                return _MISSING
        else:
            if not isinstance(value, dict) or name not in value:
                return _MISSING
            value = value[name]
    return value


def target_input(target: dict[str, Any], event: dict[str, Any], rule: dict[str, str]) -> bytes:
    """The payload a target gets for ``event``; ``rule`` holds its ``arn`` and ``name``."""
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath") is not None:
        found = select_path(event, target["InputPath"])
        return json.dumps(None if found is _MISSING else found).encode()
    transformer = target.get("InputTransformer")
    if transformer is None:
        return json.dumps(event).encode()
    values: dict[str, Any] = {
        "aws.events.rule-arn": rule["arn"],
        "aws.events.rule-name": rule["name"],
        "aws.events.event.ingestion-time": event.get("time"),
        "aws.events.event": event,
        "aws.events.event.json": event,
    }
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        values[name] = select_path(event, path)
    return render(str(transformer["InputTemplate"]), values).encode()


def render(template: str, values: dict[str, Any]) -> str:
    """Fills ``<name>`` placeholders, each by whether it stands inside a JSON string."""
    out: list[str] = []
    in_string = False
    i = 0
    plain = not template.lstrip().startswith(("{", "[", '"'))
    while i < len(template):
        char = template[i]
        if char == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if char == '"' and not plain:
            in_string = not in_string
        elif char == "<":
            found = _PLACEHOLDER.match(template, i)
            if found and found.group(1) in values:
                out.append(_fill(values[found.group(1)], in_string, plain))
                i = found.end()
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _fill(value: Any, in_string: bool, plain: bool) -> str:
    if not (in_string or plain):
        return "null" if value is _MISSING else json.dumps(value)
    if value is _MISSING or value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if plain else json.dumps(text)[1:-1]  # escaped inside a JSON string
