"""Our event-stream encoder, read back by botocore's own decoder (what boto3 uses)."""

from __future__ import annotations

import json

from botocore.eventstream import EventStreamBuffer

from kindling.api import eventstream


def test_botocore_decodes_what_we_encode() -> None:
    data = eventstream.event("PayloadChunk", b"\x00binary\xff", "application/octet-stream")
    data += eventstream.event("InvokeComplete", json.dumps({}).encode(), "application/json")
    buffer = EventStreamBuffer()
    buffer.add_data(data[:7])  # split anywhere: the decoder reassembles
    buffer.add_data(data[7:])
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == ["PayloadChunk", "InvokeComplete"]
    assert messages[0].headers[":message-type"] == "event"
    assert messages[0].payload == b"\x00binary\xff"
    assert json.loads(messages[1].payload) == {}
