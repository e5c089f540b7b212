"""EventBridge's event-pattern language: one module for every place a pattern filters
events (EventBridge rules, Lambda event source mappings' FilterCriteria).

A pattern is a JSON object shaped like the events it selects. Keys are ANDed; each
leaf is a list of matchers, ORed; ``$or`` at any level is a list of sub-patterns of
which one must match too. A matcher is a literal (string, number, boolean, null) or an
object with one operator: ``prefix``, ``suffix`` (each optionally
``{"equals-ignore-case": ...}``), ``equals-ignore-case``, ``wildcard``,
``anything-but`` (a literal, a list of literals, or a ``prefix``/``suffix``/
``equals-ignore-case``/``wildcard`` object), ``numeric`` (``=`` or a lower and/or upper
bound), ``exists`` and ``cidr``. Sources: the EventBridge user guide's "Comparison
operators for use in event patterns", "Content filtering", "Matching events on null
values and empty strings" and "Arrays in event patterns"; the test suite cites each.

Matching follows those pages: an event's arrays are flattened (a leaf matches when
any element does), numbers compare as numbers (``300`` matches ``3.0e2``), a literal
matches only a value of its own JSON type, a null is a value (not an absence), an
empty array is no value, and ``anything-but`` and every string operator need the field
to be present (only ``"exists": false`` matches an absent one).

A pattern is compiled once (``compile_pattern``): every problem is found then, with a
reason in the ``InvalidEventPatternError``; matching never raises.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kindling.errors import InvalidEventPatternError

#: EventBridge's range for numbers in patterns (content filtering: "Numeric matching").
NUMERIC_LIMIT = 5.0e9

Matcher = Callable[[Any], bool]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Leaf:
    path: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    #: ``"exists": false`` among the matchers: an absent field matches.
    absent_ok: bool


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled pattern: ``matches(event)`` for a parsed JSON event."""

    _leaves: tuple[_Leaf, ...]
    _ors: tuple[tuple[Pattern, ...], ...]

    def matches(self, event: Any) -> bool:
        for leaf in self._leaves:
            values = list(_values(event, leaf.path))
            if not values:
                if not leaf.absent_ok:
                    return False
                continue
            if not any(m(v) for v in values for m in leaf.matchers):
                return False
        return all(any(p.matches(event) for p in choice) for choice in self._ors)


def compile_pattern(pattern: str | dict[str, Any]) -> Pattern:
    """Compiles a pattern given as JSON text or as a parsed object; raises
    ``InvalidEventPatternError`` saying what is wrong."""
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise _invalid(f"the pattern is not valid JSON ({exc})") from None
    if not isinstance(pattern, dict):
        raise _invalid("the pattern must be a JSON object")
    try:
        return _compile(pattern, ())
    except RecursionError:
        raise _invalid("the pattern is nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _invalid(reason: str) -> InvalidEventPatternError:
    return InvalidEventPatternError(reason)


def _compile(node: dict[str, Any], path: tuple[str, ...]) -> Pattern:
    leaves: list[_Leaf] = []
    ors: list[tuple[Pattern, ...]] = []
    for key, value in node.items():
        where = ".".join((*path, key))
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                at = ".".join(path) or "the top"
                raise _invalid(f'"$or" at "{at}" needs a list of at least two patterns')
            choices = []
            for choice in value:
                if not isinstance(choice, dict) or not choice:
                    raise _invalid(f'every choice of "$or" at "{where}" must be a non-empty object')
                choices.append(_compile(choice, path))
            ors.append(tuple(choices))
        elif isinstance(value, dict):
            if not value:
                raise _invalid(f'"{where}" is an empty object')
            nested = _compile(value, (*path, key))
            leaves.extend(nested._leaves)
            ors.extend(nested._ors)
        elif isinstance(value, list):
            if not value:
                raise _invalid(f'"{where}" has an empty list of values')
            matchers = tuple(_matcher(item, where) for item in value)
            absent_ok = any(_is_exists_false(item) for item in value)
            leaves.append(_Leaf((*path, key), matchers, absent_ok))
        else:
            raise _invalid(f'"{where}" must be an object or an array')
    return Pattern(tuple(leaves), tuple(ors))


def _is_exists_false(item: Any) -> bool:
    return isinstance(item, dict) and item.get("exists") is False


# --- the event side ------------------------------------------------------------------


def _values(event: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """The leaf values at ``path``, arrays flattened at every level; an object is no
    leaf value (operators only work on leaves)."""
    if not path:
        if isinstance(event, list):
            for item in event:
                yield from _values(item, path)
        elif not isinstance(event, dict):
            yield event
        return
    if isinstance(event, list):
        for item in event:
            yield from _values(item, path)
        return
    if not isinstance(event, dict):
        return
    child = event.get(path[0], _MISSING)
    if child is not _MISSING:
        yield from _values(child, path[1:])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_literal(expected: Any, value: Any) -> bool:
    if expected is None or isinstance(expected, bool):
        return value is expected
    if isinstance(expected, str):
        return isinstance(value, str) and value == expected
    return _is_number(value) and float(value) == float(expected)


# --- matchers --------------------------------------------------------------------------


def _matcher(item: Any, where: str) -> Matcher:
    if _is_number(item):
        _check_number(item, where)
    if item is None or isinstance(item, str | bool) or _is_number(item):
        return _literal(item)
    if isinstance(item, list):
        raise _invalid(f'"{where}" has a list inside its list of values')
    if len(item) != 1:
        raise _invalid(f'a matcher of "{where}" must have exactly one operator, not {len(item)}')
    ((operator, argument),) = item.items()
    build = _OPERATORS.get(operator)
    if build is None:
        raise _invalid(f'"{where}" uses the unknown operator "{operator}"')
    return build(argument, where)


def _literal(expected: Any) -> Matcher:
    def match(value: Any) -> bool:
        return _same_literal(expected, value)

    return match


def _check_number(value: Any, where: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or abs(value) > NUMERIC_LIMIT:
        raise _invalid(f'"{where}": numbers must be between -5.0e9 and 5.0e9, not {value!r}')
    return float(value)


def _text(argument: Any, operator: str, where: str) -> str:
    if not isinstance(argument, str):
        raise _invalid(f'"{where}": "{operator}" takes a string')
    return argument


def _affix(operator: str) -> Callable[[Any, str], Matcher]:
    """``prefix`` or ``suffix``: a string, or ``{"equals-ignore-case": string}``."""
    test = str.startswith if operator == "prefix" else str.endswith

    def build(argument: Any, where: str) -> Matcher:
        if isinstance(argument, dict) and set(argument) == {"equals-ignore-case"}:
            folded = _text(argument["equals-ignore-case"], operator, where).lower()
            return lambda v: isinstance(v, str) and test(v.lower(), folded)
        text = _text(argument, operator, where)
        return lambda v: isinstance(v, str) and test(v, text)

    return build


def _equals_ignore_case(argument: Any, where: str) -> Matcher:
    folded = _text(argument, "equals-ignore-case", where).lower()
    return lambda v: isinstance(v, str) and v.lower() == folded


def _wildcard_regex(argument: Any, where: str) -> re.Pattern[str]:
    text = _text(argument, "wildcard", where)
    parts: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise _invalid(f'"{where}": a backslash in "wildcard" escapes only "*" or "\\"')
            parts.append(re.escape(text[i + 1]))
            i += 2
            continue
        if char == "*":
            if i + 1 < len(text) and text[i + 1] == "*":
                raise _invalid(f'"{where}": consecutive wildcard characters in "{text}"')
            parts.append(".*")
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _wildcard(argument: Any, where: str) -> Matcher:
    regex = _wildcard_regex(argument, where)
    return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None


def _anything_but(argument: Any, where: str) -> Matcher:
    if isinstance(argument, dict):
        if len(argument) != 1:
            raise _invalid(f'"{where}": "anything-but" takes one operator')
        ((operator, inner),) = argument.items()
        if operator in ("prefix", "suffix"):
            matched = _affix(operator)(inner, where)
        elif operator in ("equals-ignore-case", "wildcard"):
            options = inner if isinstance(inner, list) else [inner]
            if not options:
                raise _invalid(f'"{where}": "anything-but" "{operator}" needs a value')
            build = _equals_ignore_case if operator == "equals-ignore-case" else _wildcard
            each = [build(option, where) for option in options]

            def matched(v: Any, each: list[Matcher] = each) -> bool:
                return any(m(v) for m in each)
        else:
            raise _invalid(f'"{where}": "anything-but" cannot take "{operator}"')
        return lambda v: not matched(v)
    options = argument if isinstance(argument, list) else [argument]
    if not options:
        raise _invalid(f'"{where}": "anything-but" needs a value')
    if all(isinstance(o, str) for o in options):
        excluded: tuple[Any, ...] = tuple(options)
    elif all(_is_number(o) for o in options):
        excluded = tuple(_check_number(o, where) for o in options)
    else:
        raise _invalid(
            f'"{where}": "anything-but" takes strings or numbers, not a mix or {options!r}'
        )
    return lambda v: not any(_same_literal(e, v) for e in excluded)


_LOWER = {">": float.__gt__, ">=": float.__ge__}
_UPPER = {"<": float.__lt__, "<=": float.__le__}


def _bound(compare: Callable[[float, float], bool], limit: float) -> Callable[[float], bool]:
    def test(value: float) -> bool:
        return compare(value, limit)

    return test


def _numeric(argument: Any, where: str) -> Matcher:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise _invalid(f'"{where}": "numeric" takes ["=", n] or up to two [operator, n] pairs')
    pairs = [(argument[i], argument[i + 1]) for i in range(0, len(argument), 2)]
    tests: list[Callable[[float], bool]] = []
    lower: float | None = None
    upper: float | None = None
    for operator, bound in pairs:
        number = _check_number(bound, where)
        if operator == "=" and len(pairs) == 1:
            tests.append(_bound(float.__eq__, number))
        elif operator in _LOWER and lower is None:
            lower = number
            tests.append(_bound(_LOWER[operator], number))
        elif operator in _UPPER and upper is None:
            upper = number
            tests.append(_bound(_UPPER[operator], number))
        else:
            raise _invalid(f'"{where}": "numeric" cannot use {operator!r} there')
    if lower is not None and upper is not None and lower >= upper:
        raise _invalid(f'"{where}": the "numeric" range is empty ({lower} to {upper})')
    return lambda v: _is_number(v) and all(test(float(v)) for test in tests)


def _exists(argument: Any, where: str) -> Matcher:
    if not isinstance(argument, bool):
        raise _invalid(f'"{where}": "exists" takes true or false')
    # present values match "exists": true; "exists": false only ever matches absence
    return lambda v: argument


def _cidr(argument: Any, where: str) -> Matcher:
    try:
        network = ipaddress.ip_network(_text(argument, "cidr", where), strict=False)
    except ValueError:
        raise _invalid(f'"{where}": "{argument}" is not a CIDR block') from None

    def within(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            return ipaddress.ip_address(v) in network
        except ValueError:
            return False

    return within


_OPERATORS: dict[str, Callable[[Any, str], Matcher]] = {
    "prefix": _affix("prefix"),
    "suffix": _affix("suffix"),
    "equals-ignore-case": _equals_ignore_case,
    "wildcard": _wildcard,
    "anything-but": _anything_but,
    "numeric": _numeric,
    "exists": _exists,
    "cidr": _cidr,
}
