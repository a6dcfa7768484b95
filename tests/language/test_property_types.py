"""Event properties of every field type (integer, boolean, date, timestamp besides text and
numbers): Polars and the generated SQL on DuckDB give the members hand-written DuckDB SQL gives,
with NULL objects and NULL fields."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import polars as pl
import pytest

from tests.language.test_language import A, count, segment
from tests.support.language_fixture import AS_OF, PEOPLE
from tests.support.workspace import CONTRACTS, events_contract_with_typed_fields
from transforms.contracts.odcs import load_contract, parse_contract
from transforms.engines.membership import event_features, segment_members
from transforms.language.compiler import compile_segments
from transforms.language.sql import run_query


def typed_events_contract():
    path = CONTRACTS / "events.odcs.yaml"
    return parse_contract(events_contract_with_typed_fields(), str(path))


EVENTS_CONTRACT = typed_events_contract()


def _props(seats=None, trial=None, renews_on=None, seen_at=None) -> dict:
    return {
        "seats": seats,
        "trial": trial,
        "renews_on": renews_on,
        "seen_at": seen_at,
        "source": None,
        "plan": None,
        "product_id": None,
        "price": None,
    }


ROWS = [
    ("p01", "renewed", _props(5, False, date(2026, 4, 1), datetime(2026, 3, 30, 12, tzinfo=UTC))),
    ("p01", "renewed", _props(2, True, date(2026, 3, 1), None)),
    ("p02", "renewed", _props(None, True, None, datetime(2026, 3, 1, tzinfo=UTC))),
    ("p03", "renewed", None),
    ("p04", "renewed", _props(12, None, date(2026, 3, 31), datetime(2026, 3, 30, 23, tzinfo=UTC))),
    ("p05", "login", _props(1, False, None, None)),
]
RENEWS_LATE = "AND e.properties.renews_on >= DATE '2026-03-31'"
CASES = [
    (
        "event_sum('renewed', properties.seats) >= 5",
        "coalesce((SELECT sum(e.properties.seats) {w}), 0) >= 5",
    ),
    (
        "performed('renewed', where => properties.trial)",
        f"{count('renewed', 'AND e.properties.trial')} >= 1",
    ),
    (
        "performed('renewed', where => NOT properties.trial)",
        f"{count('renewed', 'AND NOT e.properties.trial')} >= 1",
    ),
    (
        "performed('renewed', where => properties.renews_on >= '2026-03-31')",
        f"{count('renewed', RENEWS_LATE)} >= 1",
    ),
    (
        "performed('*', where => properties.seen_at > as_of() - INTERVAL 1 DAY)",
        f"{count(None, f'AND e.properties.seen_at > {A} - INTERVAL 1 DAY')} >= 1",
    ),
    (
        "event_max('renewed', properties.seats, where => properties.seats * 2 > 5) > 10",
        "(SELECT max(e.properties.seats) {w} AND e.properties.seats * 2 > 5) > 10",
    ),
    (
        "event_count_distinct('*', properties.trial) = 2",
        "(SELECT count(DISTINCT e.properties.trial) {w}) = 2",
    ),
    (
        "performed('renewed', where => properties.seen_at IS NULL)",
        f"{count('renewed', 'AND e.properties.seen_at IS NULL')} >= 1",
    ),
]
RENEWED = (
    f"FROM events e WHERE e.person_id = p.person_id AND e.timestamp <= {A} AND e.name = 'renewed'"
)


def write_files(folder):
    """(people, events) Parquet files: the language fixture's people, the events of ROWS."""
    events = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(ROWS))],
            "person_id": [r[0] for r in ROWS],
            "name": [r[1] for r in ROWS],
            "timestamp": [AS_OF.replace(hour=0) for _ in ROWS],
            "amount": [None] * len(ROWS),
            "currency": [None] * len(ROWS),
            "properties": [r[2] for r in ROWS],
        },
        schema=EVENTS_CONTRACT.polars_schema(),
    )
    people, path = folder / "people.parquet", folder / "events.parquet"
    PEOPLE.write_parquet(people)
    events.write_parquet(path)
    return people, path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("property-types"))


@pytest.mark.parametrize(("predicate", "reference"), CASES, ids=[c[0] for c in CASES])
def test_every_field_type_on_every_back_end(files, predicate, reference):
    people_path, events_path = files
    contracts = (load_contract(CONTRACTS, "people"), EVENTS_CONTRACT)
    workspace, problems = compile_segments({"s": segment("s", predicate)}, *contracts, AS_OF)
    assert problems == []
    features = event_features(pl.scan_parquet(events_path), workspace)
    members = segment_members(pl.scan_parquet(people_path), features, workspace).collect()
    ours = set(members.filter(pl.col("segment_id") == "s")["person_id"])

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    query = run_query(workspace, f"read_parquet('{people_path}')", f"read_parquet('{events_path}')")
    generated = {person for sid, person in con.sql(query).fetchall() if sid == "s"}
    con.execute(f"CREATE VIEW people AS SELECT * FROM read_parquet('{people_path}')")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{events_path}')")
    where = reference.replace("{w}", RENEWED)
    expected = {
        r[0] for r in con.execute(f"SELECT person_id FROM people p WHERE {where}").fetchall()
    }
    assert ours == generated == expected
    assert expected and expected != set(PEOPLE["person_id"])  # the case tells people apart
