"""Paging by offset, as EventBridge (``Limit``) and EventBridge Scheduler
(``MaxResults``) page their lists: the ``NextToken`` is the offset of the next page,
as JSON, and a client asking for some number of items (the AWS CLI's ``--limit`` or
``--max-items`` and ``--page-size``) gets no more."""

from __future__ import annotations

import json
from typing import TypeVar

from kindling.errors import ValidationError

T = TypeVar("T")


def offset_page(
    items: list[T], token: str | None, asked: int | None, largest: int
) -> tuple[list[T], str | None]:
    """The page of ``items`` that ``token`` (None: the first) starts, of ``asked`` items
    (None: ``largest``; never more), and the token of the next page if there is one."""
    start = 0
    if token:
        try:
            start = int(json.loads(token)["at"])
        except (ValueError, KeyError, TypeError):
            raise ValidationError("The NextToken is not valid.") from None
    size = min(asked or largest, largest)
    more = json.dumps({"at": start + size}) if start + size < len(items) else None
    return items[start : start + size], more
