"""The Lambda service model from botocore, and the route table derived from it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import botocore.session

from kindling.errors import UnknownOperationError


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    fixed_query: tuple[tuple[str, str], ...]
    literal_weight: int


def load_service_model() -> Any:
    """The Lambda ``ServiceModel`` of the pinned botocore."""
    return botocore.session.get_session().get_service_model("lambda")


def _compile(uri: str) -> tuple[re.Pattern[str], tuple[tuple[str, str], ...], int]:
    path, _, query = uri.partition("?")
    fixed = tuple((k, v) for k, _, v in (part.partition("=") for part in query.split("&") if part))
    regex = ""
    literal = 0
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{"):
            name = piece[1:-1]
            if name.endswith("+"):
                regex += f"(?P<{name[:-1]}>.+)"
            else:
                regex += f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(piece)
            literal += len(piece)
    return re.compile(f"^{regex}/?$"), fixed, literal


class Router:
    """Matches (method, path, query) to one operation of the model."""

    def __init__(self, service_model: Any) -> None:
        routes: dict[str, list[Route]] = {}
        for name in service_model.operation_names:
            http = service_model.operation_model(name).http
            pattern, fixed, weight = _compile(http["requestUri"])
            routes.setdefault(http["method"], []).append(
                Route(name, http["method"], pattern, fixed, weight)
            )
        for candidates in routes.values():
            candidates.sort(key=lambda r: (-len(r.fixed_query), -r.literal_weight))
        self._routes = routes

    def match(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[str, dict[str, str]]:
        for route in self._routes.get(method, ()):
            found = route.pattern.match(path)
            if found is None:
                continue
            if any(v not in query.get(k, ()) for k, v in route.fixed_query):
                continue
            return route.operation, {k: unquote(v) for k, v in found.groupdict().items()}
        raise UnknownOperationError(f"Unknown operation {method} {path}")
