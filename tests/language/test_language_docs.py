"""docs/segment_language.md says what the compiled SQL reads: its tables of input columns match
the contracts and the types the SQL back end gives them."""

from __future__ import annotations

import re

import pytest

from tests.support.workspace import CONTRACTS, REPO
from transforms.contracts.odcs import load_contract
from transforms.language.sql import SQL_TYPES

DOC = (REPO / "docs" / "segment_language.md").read_text(encoding="utf-8")


def documented_columns(table: str) -> dict[str, str]:
    """Column -> type of the table of input columns the page gives for `table`."""
    section = DOC.split(f"`{table}`: ", 1)[1].split("\n\n", 2)[1]
    return dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", section, re.M))


@pytest.mark.parametrize("table", ["people", "events"])
def test_the_input_tables_are_the_contracts(table):
    columns = load_contract(CONTRACTS, table).columns
    expected = {c.name: SQL_TYPES[c.logical_type] for c in columns}
    assert documented_columns(table) == expected


def test_the_page_shows_how_to_compile_sql_and_applies_uploads():
    assert "segments compile --all --dialect" in DOC and "--date" in DOC
    assert "`manual_members`" in DOC
    assert "not applied by this version" not in DOC
