"""Opaque pagination markers: what a list operation hands back as NextMarker."""

from __future__ import annotations

import base64
import json
from typing import Any

from kindling.control.models import LATEST, FunctionConfig
from kindling.control.store import FunctionStore
from kindling.errors import ValidationError

#: Lambda's list operations return at most 50 items a page.
MAX_PAGE = 50


def page_size(max_items: int | None) -> int:
    return min(max_items or MAX_PAGE, MAX_PAGE)


def encode_marker(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"at": position}).encode()).decode()


def decode_marker(marker: str) -> Any:
    """The position a marker stands for; a marker we did not issue is a 400."""
    try:
        return json.loads(base64.urlsafe_b64decode(marker.encode()))["at"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValidationError(f"Invalid marker: {marker}") from exc


def _version_order(version: str) -> int:
    return -1 if version == LATEST else int(version)


def page_versions(
    store: FunctionStore, account_id: str, region: str, marker: str | None, max_items: int | None
) -> tuple[list[FunctionConfig], str | None]:
    """ListFunctions ``FunctionVersion=ALL``: every version of each function by name,
    $LATEST first and then by number; the marker is (name, version)."""
    position = decode_marker(marker) if marker else None
    if position is not None and not (
        isinstance(position, list) and len(position) == 2 and isinstance(position[1], int)
    ):
        raise ValidationError(f"Invalid marker: {marker}")
    limit = page_size(max_items)
    found: list[FunctionConfig] = []
    names_after = ""
    if position is not None:  # the rest of the function the last page ended in
        names_after = str(position[0])
        for version in store.versions(account_id, region, names_after):
            if _version_order(version.version) > position[1]:
                found.append(version)
    while len(found) <= limit:
        latest = store.page(account_id, region, names_after, limit + 1)
        if not latest:
            break
        for config in latest:
            found.extend(store.versions(account_id, region, config.name))
        names_after = latest[-1].name
    if len(found) <= limit:
        return found, None
    found = found[:limit]
    last = found[-1]
    return found, encode_marker([last.name, _version_order(last.version)])
