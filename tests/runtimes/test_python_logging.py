"""The Python runtime client's logging and imports (bootstrap.py), run for real: Lambda's
log line format and levels, and the modules a cold start loads (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.runtimes.conftest import Function

LOGGING_APP = """\
import logging
import sys

logger = logging.getLogger()
logger.warning("at init")

def handler(event, context):
    print("hello from print")
    print("to stderr", file=sys.stderr)
    logger.warning("hello %s", "world")
    logger.info("an info line")
    logging.getLogger("child").error("from a child")
    return "done"
"""

LOG_LINE = r"\[{level}\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{request_id}\t{message}\n"


def test_print_and_logging_lines(function: Function) -> None:
    function.write({"app.py": LOGGING_APP})
    function.start()
    request_id, posted = function.invoke({})
    assert posted.body == b'"done"'
    out = function.stdout
    assert re.search(LOG_LINE.format(level="WARNING", request_id="", message="at init"), out)
    assert "hello from print\n" in out
    assert re.search(
        LOG_LINE.format(level="WARNING", request_id=request_id, message="hello world"), out
    )
    assert re.search(
        LOG_LINE.format(level="ERROR", request_id=request_id, message="from a child"), out
    )
    assert "an info line" not in out  # the root logger stays at WARNING, as on Lambda
    assert "to stderr\n" in function.stderr


def test_log_level_from_env(function: Function) -> None:
    function.write({"app.py": LOGGING_APP})
    function.start(AWS_LAMBDA_LOG_LEVEL="debug")
    request_id, _ = function.invoke({})
    assert re.search(
        LOG_LINE.format(level="INFO", request_id=request_id, message="an info line"),
        function.stdout,
    )


def test_logging_basic_config_is_a_no_op_as_on_lambda(function: Function) -> None:
    function.write(
        {
            "app.py": (
                "import logging\nlogging.basicConfig(level=logging.INFO, format='%(message)s')\n"
                "def handler(event, context):\n"
                "    logging.getLogger().warning('formatted')\n    return 1\n"
            )
        }
    )
    function.start()
    request_id, _ = function.invoke({})
    assert re.search(
        LOG_LINE.format(level="WARNING", request_id=request_id, message="formatted"),
        function.stdout,
    )


def test_logging_imported_before_the_runtime_starts(function: Function, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import logging\n")
    function.write({"app.py": LOGGING_APP})
    function.start(PYTHONPATH=str(site))
    request_id, _ = function.invoke({})
    assert re.search(
        LOG_LINE.format(level="WARNING", request_id=request_id, message="hello world"),
        function.stdout,
    )


def test_cold_start_imports_stay_minimal(function: Function) -> None:
    function.write(
        {"app.py": "import sys\n\ndef handler(event, context):\n    return sorted(sys.modules)\n"}
    )
    function.start()
    _, posted = function.invoke({})
    loaded = set(posted.json())
    heavy = {"http.client", "urllib", "email", "socket", "logging", "traceback", "typing"}
    assert loaded & heavy == set()
    assert not any(name.startswith("kindling") for name in loaded)
