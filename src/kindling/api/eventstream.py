"""The ``application/vnd.amazon.eventstream`` framing, encoder side.

botocore ships only the decoder (``botocore.eventstream``); InvokeWithResponseStream
answers with these messages, so the server writes them. A message is: total length and
headers length (big-endian uint32 each), the CRC32 of those 8 bytes, the headers, the
payload, and the CRC32 of everything before it. Every header here is a string (type 7):
name length (1 byte), name, 7, value length (uint16), value.
"""

from __future__ import annotations

import struct
import zlib

_STRING = 7


def _headers(headers: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        key = name.encode()
        data = value.encode()
        out += struct.pack("!B", len(key)) + key + struct.pack("!BH", _STRING, len(data)) + data
    return bytes(out)


def message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    head = _headers(headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(event_type: str, payload: bytes, content_type: str) -> bytes:
    """One event of an event stream, as the service model's reader expects it."""
    return message(
        [
            (":event-type", event_type),
            (":content-type", content_type),
            (":message-type", "event"),
        ],
        payload,
    )
