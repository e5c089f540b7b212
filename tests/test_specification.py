"""docs/specification.md and kindling/limits.py say the same thing: every row of the
spec's tables names a constant of limits.py whose value is the row's kindling figure,
and every constant of limits.py's "Lambda's quotas" section has a row. A figure changed
in one place and not the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kindling import limits

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "specification.md"
MODULE = ROOT / "src" / "kindling" / "limits.py"
ROW = re.compile(r"^\|\s*(?P<what>[^|]+?)\s*\|\s*`(?P<name>[A-Z_0-9]+)`\s*\|(?P<rest>.*)$")


def spec_rows() -> list[tuple[str, str, str, str]]:
    """(what, constant, kindling figure, AWS figure) of every limit row of the spec."""
    rows = []
    for line in SPEC.read_text().splitlines():
        found = ROW.match(line)
        if found is None:
            continue
        cells = [c.strip() for c in found["rest"].split("|")]
        rows.append((found["what"], found["name"], cells[0], cells[1]))
    return rows


def lambda_section_constants() -> list[str]:
    """The names limits.py defines in its "Lambda's quotas" section."""
    text = MODULE.read_text()
    start = text.index("# --- Lambda's quotas")
    end = text.index("\n# ---", start + 1)
    return re.findall(r"^([A-Z][A-Z_0-9]+) = ", text[start:end], re.MULTILINE)


def number(cell: str) -> int:
    return int(cell.replace(",", "").replace("_", ""))


def test_the_spec_has_rows() -> None:
    assert len(spec_rows()) >= 20


@pytest.mark.parametrize(("what", "name", "ours", "aws"), spec_rows())
def test_each_row_is_the_module_figure(what: str, name: str, ours: str, aws: str) -> None:
    assert hasattr(limits, name), f"{what}: limits.{name} does not exist"
    assert getattr(limits, name) == number(ours), (
        f"{what}: the spec says {ours}, limits.{name} is {getattr(limits, name)}"
    )
    number(aws)  # AWS's figure is a number too


def test_every_lambda_quota_is_in_the_spec() -> None:
    listed = {name for _, name, _, _ in spec_rows()}
    section = lambda_section_constants()
    assert len(section) >= 15
    missing = [name for name in section if name not in listed]
    assert not missing, f"limits.py's Lambda quotas not in docs/specification.md: {missing}"


def test_a_figure_that_differs_from_aws_says_so() -> None:
    """A row whose kindling figure is not AWS's must explain itself ("Differs")."""
    for line in SPEC.read_text().splitlines():
        found = ROW.match(line)
        if found is None:
            continue
        cells = [c.strip() for c in found["rest"].split("|")]
        if number(cells[0]) != number(cells[1]):
            assert "Differs" in line, f"{found['what']}: kindling and AWS differ, say why"


def test_each_lambda_quota_cites_aws() -> None:
    """Each constant of the section carries AWS's figure or wording in its comment."""
    text = MODULE.read_text()
    start = text.index("# --- Lambda's quotas")
    end = text.index("\n# ---", start + 1)
    block = text[start:end]
    for name in lambda_section_constants():
        at = block.index(f"\n{name} = ")
        comment = block[:at].rsplit("\n\n", 1)[-1]
        assert "AWS" in comment or "Default" in comment or "default" in comment, name
