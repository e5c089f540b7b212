import base64
import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kindling.errors import ValidationError
from kindling.limits import LOG_INVOCATION_BYTES, LOG_TAIL_BYTES
from kindling.telemetry import logs as logs_module
from kindling.telemetry.logs import LogStore
from kindling.telemetry.logstream import LogStream, Report


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    logs = LogStore(tmp_path)
    yield logs
    logs.close()


def read_all(store: LogStore, name: str = "f", offset: int = 0) -> tuple[bytes, int]:
    data = b""
    while True:
        chunk, offset = store.read("000000000000", "us-east-1", name, offset)
        if not chunk:
            return data, offset
        data += chunk


def test_report_line_has_lambdas_fields() -> None:
    line = Report("rid", 12.341, 128, 40, init_ms=55.5).line()
    assert line == (
        "REPORT RequestId: rid\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 55.50 ms\t"
    )
    assert "Init Duration" not in Report("rid", 1.0, 128, 40).line()
    oom = Report("rid", 1.0, 128, 128, status="error", error_type="Runtime.OutOfMemory").line()
    assert oom.endswith("Status: error\tError Type: Runtime.OutOfMemory\t")


def test_tail_keeps_the_last_4kb(store: LogStore) -> None:
    stream = LogStream(store.open("000000000000", "us-east-1", "f"), "an invocation")
    for i in range(2000):
        stream.output(f"line {i:05d}")
    stream.system("END RequestId: r")
    stream.close()
    tail = base64.b64decode(stream.tail_b64())
    assert len(tail) == LOG_TAIL_BYTES
    assert tail.endswith(b"line 01999\nEND RequestId: r\n")


def test_store_appends_and_reads_from_offsets(store: LogStore) -> None:
    store.append("000000000000", "us-east-1", "f", ["one", "two"])
    data, offset = store.read("000000000000", "us-east-1", "f", 0)
    assert data == b"one\ntwo\n"
    store.append("000000000000", "us-east-1", "f", ["three"])
    more, _ = store.read("000000000000", "us-east-1", "f", offset)
    assert more == b"three\n"


def test_an_invocations_output_streams_and_is_never_held(store: LogStore) -> None:
    """29 MB of short lines grew the server by 730 MB when every line was kept until the
    invocation ended: now a line is in the log before the invocation ends, and what a
    stream holds stays at its tail, however much passes through it."""
    stream = LogStream(store.open("000000000000", "us-east-1", "f"), "an invocation", cap=1 << 40)
    stream.output("first")
    assert read_all(store)[0] == b"first\n"  # written while the invocation still runs
    tracemalloc.start()
    try:
        for _ in range(200_000):  # 2.2 MB of 10-byte lines
            stream.output("short line")
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_000_000  # the writer's queue at most; was ~25x the output
    data, _ = read_all(store)
    assert data.count(b"short line\n") == 200_000


def test_output_beyond_the_invocation_cap_is_dropped_with_one_marker(store: LogStore) -> None:
    stream = LogStream(
        store.open("000000000000", "us-east-1", "f"), "an invocation", header="START r"
    )
    line = "x" * 1023  # 1 KB with its newline
    for _ in range(2 * LOG_INVOCATION_BYTES // 1024):
        stream.output(line)
    stream.system("END RequestId: r")
    stream.close()
    data, _ = read_all(store)
    lines = data.decode().splitlines()
    assert lines[0] == "START r"
    assert lines[-1] == "END RequestId: r"
    kept = sum(len(text) + 1 for text in lines if text == line)
    assert kept == LOG_INVOCATION_BYTES
    markers = [text for text in lines if "dropped" in text]
    assert markers == [
        f"[kindling] {LOG_INVOCATION_BYTES} bytes of log output dropped: an invocation may "
        f"log at most {LOG_INVOCATION_BYTES} bytes"
    ]
    assert lines[-2] == markers[0]
    tail = base64.b64decode(stream.tail_b64())
    assert tail.endswith(markers[0].encode() + b"\nEND RequestId: r\n")


def test_the_log_rotates_and_keeps_its_offsets(tmp_path: Path) -> None:
    store = LogStore(tmp_path, segment_bytes=1000, segments_kept=3)
    try:
        target = store.open("000000000000", "us-east-1", "f")
        for i in range(100):
            target.write(f"line {i:04d} {'.' * 89}\n".encode())  # 100 bytes each
        data, end = read_all(store)
        assert end == 10_000  # the whole log's length: offsets go on across segments
        assert len(os.listdir(tmp_path / "000000000000" / "us-east-1" / "f")) == 3
        assert data.startswith(b"line 0070 ")  # the oldest rotated away, kept whole
        assert data.endswith(b"line 0099 " + b"." * 89 + b"\n")
        target.write(b"next\n")
        assert read_all(store, offset=end)[0] == b"next\n"
        assert store.read("000000000000", "us-east-1", "f", 10**12) == (b"", 10_005)
    finally:
        store.close()


def test_segments_not_written_for_the_retention_expire(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = LogStore(tmp_path, retention_s=3600, clock=lambda: now[0])
    try:
        store.append("000000000000", "us-east-1", "old", ["old line"])
        assert read_all(store, "old")[0] == b"old line\n"
        folder = tmp_path / "000000000000" / "us-east-1" / "old"
        for path in folder.iterdir():
            os.utime(path, (now[0] - 7200, now[0] - 7200))
        now[0] += 10 * 3600  # past the next sweep too
        store.append("000000000000", "us-east-1", "new", ["new line"])
        assert read_all(store, "new")[0] == b"new line\n"
        assert read_all(store, "old") == (b"", 0)
        assert not folder.exists()
    finally:
        store.close()


def test_deleting_a_function_deletes_its_log_and_its_sandboxes_late_lines(
    store: LogStore,
) -> None:
    """A new function with the same name showed the old one's lines."""
    old = store.open("000000000000", "us-east-1", "f")
    old.write(b"old function\n")
    assert read_all(store)[0] == b"old function\n"
    store.delete("000000000000", "us-east-1", "f")
    old.write(b"late line of an old sandbox\n")
    new = store.open("000000000000", "us-east-1", "f")
    new.write(b"new function\n")
    assert read_all(store)[0] == b"new function\n"


@pytest.mark.parametrize(
    ("account", "region", "name"),
    [
        ("000000000000", "..", "f"),
        ("000000000000", ".", "f"),
        ("..", "us-east-1", "f"),
        ("000000000000", "us-east-1", "../../x"),
        ("000000000000", "a/b", "f"),
        ("000000000000", "", "f"),
        ("000000000000", "us-east-1\0", "f"),
    ],
)
def test_a_log_path_never_leaves_its_folder(
    store: LogStore, tmp_path: Path, account: str, region: str, name: str
) -> None:
    """A region of '..' moved a log file out of its account's folder."""
    with pytest.raises(ValidationError):
        store.open(account, region, name)
    with pytest.raises(ValidationError):
        store.read(account, region, name, 0)
    with pytest.raises(ValidationError):
        store.delete(account, region, name)


def test_output_beyond_what_the_writer_may_hold_is_dropped_and_counted(tmp_path: Path) -> None:
    store = LogStore(tmp_path, pending_bytes=50)
    try:
        target = store.open("000000000000", "us-east-1", "f")
        target.write(b"y" * 99 + b"\n")  # more than may wait for the writer
        target.write(b"kept\n")
        data, _ = read_all(store)
        assert b"kept\n" in data
        assert b"yyyy" not in data
        assert b"100 bytes of log output dropped: the log writer was 50 bytes behind" in data
    finally:
        store.close()


def test_writes_happen_off_the_calling_thread(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk must not stall the event loop: the loop only queues."""
    writers: set[int] = set()
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        writers.add(threading.get_ident())
        return real_write(fd, data)

    monkeypatch.setattr(logs_module.os, "write", write)
    store.append("000000000000", "us-east-1", "f", ["line"])
    assert read_all(store)[0] == b"line\n"
    assert writers and threading.get_ident() not in writers


def test_the_writer_keeps_a_bounded_number_of_files_open(store: LogStore) -> None:
    """One open file per function ever logged ran into the server's descriptor limit."""
    from kindling.limits import LOG_OPEN_FILES

    before = len(os.listdir("/proc/self/fd"))
    for i in range(LOG_OPEN_FILES * 3):
        store.append("000000000000", "us-east-1", f"f{i}", ["line"])
        read_all(store, f"f{i}")  # one batch each: every function's file is opened
    assert len(os.listdir("/proc/self/fd")) - before <= LOG_OPEN_FILES + 2
    assert read_all(store, "f0")[0] == b"line\n"


def test_a_platform_line_is_never_longer_than_a_log_line(store: LogStore) -> None:
    """An error line carries the function's errorMessage, which may be megabytes."""
    from kindling.limits import LOG_LINE_BYTES

    stream = LogStream(store.open("000000000000", "us-east-1", "f"), "an invocation")
    stream.system("Error: " + "m" * (3 * LOG_LINE_BYTES))
    stream.close()
    data, _ = read_all(store)
    assert len(data) < LOG_LINE_BYTES + 100
    assert data.endswith(f" [kindling] {2 * LOG_LINE_BYTES + 7} bytes cut\n".encode())


def test_a_functions_log_grows_at_a_bounded_rate(tmp_path: Path) -> None:
    """1 GB of log was written in 13 s: a function's log grows by at most so many bytes a
    second (a segment saved up for bursts); beyond, output is dropped and counted."""
    now = [1000.0]
    store = LogStore(tmp_path, segment_bytes=100, rate_bytes=100, clock=lambda: now[0])
    try:
        target = store.open("000000000000", "us-east-1", "f")
        target.write(b"a" * 79 + b"\n")  # 80 of the 100 saved up
        target.write(b"b" * 49 + b"\n")  # 50 more: over
        now[0] += 1.0  # 100 more a second later
        target.write(b"c" * 49 + b"\n")
        other = store.open("000000000000", "us-east-1", "g")
        other.write(b"d" * 99 + b"\n")  # each function has its own allowance
        data, _ = read_all(store)
        assert b"a" * 79 + b"\n" in data and b"c" * 49 + b"\n" in data
        assert b"bbbb" not in data
        why = "a function's log may grow by at most 100 bytes a second"
        assert f"[kindling] 50 bytes of log output dropped: {why}\n".encode() in data
        assert read_all(store, "g")[0] == b"d" * 99 + b"\n"
    finally:
        store.close()


def test_logs_of_functions_that_no_longer_exist_go_at_start(store: LogStore) -> None:
    """A deletion a crash kept the writer from finishing is finished at the next start."""
    store.append("000000000000", "us-east-1", "kept", ["kept"])
    store.append("000000000000", "us-east-1", "gone", ["gone"])
    read_all(store, "gone")
    store.keep_only({("000000000000", "us-east-1", "kept")})
    assert read_all(store, "gone") == (b"", 0)
    assert read_all(store, "kept")[0] == b"kept\n"


def test_an_invocations_platform_lines_are_one_write_and_its_output_goes_at_once(
    store: LogStore,
) -> None:
    """START, END and REPORT of a quiet invocation reach the log in one write (three
    wake-ups of the log's lock were a tenth of a warm invoke's server CPU); what the
    function prints is handed on at once, so ``kindling logs --follow`` sees it live."""
    target = store.open("000000000000", "us-east-1", "f")
    writes: list[bytes] = []
    original = target.write

    def counting(data: bytes) -> None:
        writes.append(data)
        original(data)

    target.write = counting  # type: ignore[method-assign]
    quiet = LogStream(target, "an invocation", header="START q")
    quiet.system("END q")
    quiet.system("REPORT q")
    assert writes == []
    quiet.close()
    assert writes == [b"START q\nEND q\nREPORT q\n"]
    writes.clear()
    loud = LogStream(target, "an invocation", header="START l")
    loud.output("hello")
    assert writes == [b"START l\nhello\n"]
