"""The ``kindling`` command's own parsing (what runs before any server starts)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kindling.cli import app


@pytest.mark.parametrize("value", ["fd00::/8", "10.0.0.1/8", "ten"])
def test_serve_refuses_an_egress_allow_list_it_cannot_mean(value: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--egress-allow", value])
    assert result.exit_code == 2, result.output
    assert "--egress-allow" in result.output


def test_serve_refuses_a_counting_url_that_is_not_redis() -> None:
    result = CliRunner().invoke(app, ["serve", "--counting", "postgresql://db/kindling"])
    assert result.exit_code == 2, result.output
    assert "--counting" in result.output
