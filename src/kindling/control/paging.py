"""Opaque pagination markers: what a list operation hands back as NextMarker."""

from __future__ import annotations

import base64
import json
from typing import Any

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
