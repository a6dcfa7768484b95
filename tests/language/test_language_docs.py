"""docs/segment_language.md says what the compiled SQL reads (its tables of input columns match
the contracts and the types the SQL back end gives them), and every predicate it shows is a case
of tests/language/test_language.py, run against hand-written DuckDB SQL."""

from __future__ import annotations

import re

import pytest

from tests.language.test_language import CASES
from tests.support.language_fixture import AS_OF
from tests.support.workspace import CONTRACTS, REPO
from transforms.contracts.odcs import load_contract
from transforms.language.compiler import compile_segments
from transforms.language.definitions import Segment, SegmentFile
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


def documented_predicates() -> set[str]:
    """Every inline code span of the page that is a whole predicate the compiler accepts."""
    people, events = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    found = set()
    for span in set(re.findall(r"(?<!`)`([^`\n]+)`(?!`)", DOC)):
        text = span.replace("\\|", "|")  # a | inside a table cell
        where = {"s": Segment("s", "s.yaml", SegmentFile(name="s", type="data_driven", where=text))}
        if not compile_segments(where, people, events, AS_OF)[1]:
            found.add(text)
    return found


def test_every_predicate_on_the_page_is_checked_against_duckdb():
    documented = documented_predicates()
    assert len(documented) > 50  # the span finder does find the examples
    assert documented - {predicate for predicate, _ in CASES} == set()


def test_the_events_properties_struct_is_the_contracts():
    from transforms.language.sql import column_type

    properties = load_contract(CONTRACTS, "events").column("properties")
    unquoted = column_type(properties).replace('"', "")  # the page writes it unquoted
    assert f"`{unquoted}`" in DOC
