import base64
from pathlib import Path

from kindling.telemetry.logs import LogStore, Report, tail_b64


def test_report_line_has_lambdas_fields() -> None:
    line = Report("rid", 12.341, 128, 40, init_ms=55.5).line()
    assert line == (
        "REPORT RequestId: rid\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 55.50 ms\t"
    )
    assert "Init Duration" not in Report("rid", 1.0, 128, 40).line()
    oom = Report("rid", 1.0, 128, 128, status="error", error_type="Runtime.OutOfMemory").line()
    assert oom.endswith("Status: error\tError Type: Runtime.OutOfMemory\t")


def test_tail_keeps_the_last_4kb() -> None:
    lines = [f"line {i:05d}" for i in range(2000)]
    tail = base64.b64decode(tail_b64(lines))
    assert len(tail) == 4096
    assert tail.endswith(b"line 01999\n")


def test_store_appends_and_reads_from_offsets(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append("a", "r", "f", ["one", "two"])
    data, offset = store.read("a", "r", "f", 0)
    assert data == b"one\ntwo\n"
    store.append("a", "r", "f", ["three"])
    more, _ = store.read("a", "r", "f", offset)
    assert more == b"three\n"
    store.close()
