"""The audit log on each engine: records are written in batches off the caller's path,
queried by account, time and operation, and bounded by age and by count (ADR 0043)."""

from __future__ import annotations

import time
import uuid

from kindling.store import Store
from kindling.telemetry.audit import AuditLog, AuditRecord


def _record(account: str, operation: str, at: float, status: int = 200) -> AuditRecord:
    return AuditRecord(
        request_id=str(uuid.uuid4()),
        at=at,
        account_id=account,
        principal_arn=f"arn:aws:iam::{account}:user/u",
        access_key_id="AKIAEXAMPLE",
        service="lambda",
        operation=operation,
        resource="r" * 5000,  # cut to its column's width, not refused
        status=status,
        error_code=None if status < 400 else "AccessDeniedException",
        source_ip="127.0.0.1",
    )


def test_records_wait_for_a_flush_and_are_queried_by_account_time_and_operation(
    store_url: str,
) -> None:
    log = AuditLog(Store(store_url))
    now = time.time()
    log.record(_record("111111111111", "CreateFunction", now - 100))
    log.record(_record("111111111111", "GetFunction", now - 10, 403))
    log.record(_record("222222222222", "CreateFunction", now - 5))
    assert log.flush() == 3
    assert log.flush() == 0
    log.record(_record("111111111111", "DeleteFunction", now))  # waiting: a query sees it

    mine = log.query(account_id="111111111111")
    assert [r["operation"] for r in mine] == ["CreateFunction", "GetFunction", "DeleteFunction"]
    assert mine[1]["status"] == 403 and mine[1]["error_code"] == "AccessDeniedException"
    assert len(mine[0]["resource"]) == 1024
    assert [r["operation"] for r in log.query(since=now - 50)] == [
        "GetFunction",
        "CreateFunction",
        "DeleteFunction",
    ]
    creates = log.query(operation="CreateFunction")
    assert {r["account_id"] for r in creates} == {"111111111111", "222222222222"}
    assert [r["operation"] for r in log.query(limit=1)] == ["DeleteFunction"]


def test_records_past_retention_or_the_row_bound_are_pruned(store_url: str) -> None:
    log = AuditLog(Store(store_url), retention_s=3600, max_rows=3)
    now = time.time()
    log.record(_record("111111111111", "Old", now - 7200))
    log.record(_record("222222222222", "Quiet", now - 3000))
    for index in range(5):
        log.record(_record("111111111111", f"Op{index}", now - 100 + index))
    log.flush()
    log.prune(now)
    assert [r["operation"] for r in log.query("111111111111")] == ["Op2", "Op3", "Op4"]
    # the bound is per account: a busy one does not push out another's history
    assert [r["operation"] for r in log.query("222222222222")] == ["Quiet"]


def test_a_full_buffer_drops_the_oldest_waiting_records(store_url: str) -> None:
    log = AuditLog(Store(store_url), buffer_max=2)
    now = time.time()
    for index in range(4):
        log.record(_record("111111111111", f"Op{index}", now + index))
    assert log.flush() == 2
    assert [r["operation"] for r in log.query()] == ["Op2", "Op3"]
