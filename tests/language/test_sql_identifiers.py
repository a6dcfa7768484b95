"""The generated SQL quotes every identifier, in every dialect: a warehouse that folds
unquoted names to upper case (Snowflake) must not see `person_id` and `"person_id"` as two
columns. DuckDB still runs it."""

from __future__ import annotations

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from tests.support.language_fixture import AS_OF
from tests.support.workspace import CONTRACTS, REPO
from transforms.contracts.odcs import load_contract
from transforms.errors import SegmentsError
from transforms.language.checked import CheckedDefinitions, check_segments
from transforms.language.definitions import load_segments
from transforms.language.sql import STRUCT_FIELD_DIALECTS, column_type, reads_properties, run_query
from transforms.runs.materialize import restrict

DIALECTS = ("snowflake", "bigquery", "trino", "spark", "duckdb")
INPUTS = ("people", "events", "manual_members")


def example_definitions() -> CheckedDefinitions:
    segments, problems = load_segments(REPO / "segment_definitions")
    people, events = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    checked, check_problems = check_segments(segments, people, events, AS_OF)
    assert problems == [] and check_problems == []
    return checked


CHECKED = example_definitions()


def unquoted_identifiers(sql: str, dialect: str) -> list[str]:
    tree = sqlglot.parse_one(sql, read=dialect)
    return sorted({i.name for i in tree.find_all(exp.Identifier) if not i.quoted})


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("segment", [None, *sorted(CHECKED.segments)])
def test_every_identifier_is_quoted(dialect, segment):
    chosen = CHECKED if segment is None else restrict(CHECKED, {segment})
    if reads_properties(chosen) and dialect not in STRUCT_FIELD_DIALECTS:
        with pytest.raises(SegmentsError, match="reads an event property"):
            run_query(chosen, *INPUTS, dialect=dialect)
        return
    sql = run_query(chosen, *INPUTS, dialect=dialect)
    assert unquoted_identifiers(sql, dialect) == []


def test_some_example_reads_event_properties_and_others_do_not():
    reading = [s for s in CHECKED.segments if reads_properties(restrict(CHECKED, {s}))]
    assert reading and len(reading) < len(CHECKED.segments)
    assert "snowflake" not in STRUCT_FIELD_DIALECTS


def test_duckdb_runs_the_quoted_query():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in ("people", "events"):
        columns = load_contract(CONTRACTS, table).columns
        typed = ", ".join(f'"{c.name}" {column_type(c)}' for c in columns)
        con.execute(f'CREATE TABLE "{table}" ({typed})')
    con.execute('CREATE TABLE "manual_members" ("segment_id" VARCHAR, "person_id" VARCHAR)')
    con.execute("INSERT INTO people (person_id, plan, created_at) VALUES ('a', 'trial', now())")
    con.execute("INSERT INTO manual_members VALUES ('do_not_contact', 'a')")
    rows = con.sql(run_query(CHECKED, *INPUTS, dialect="duckdb")).fetchall()
    assert ("do_not_contact", "a") in rows
