"""Property-based hunt for disagreements: random predicates over random small tables, Polars
against the generated SQL on DuckDB, and (fewer examples: each costs Spark a query) on Spark.
Same members, or a bug.

CI runs a bounded number of examples; `make fuzz` runs many more
(`HYPOTHESIS_PROFILE=fuzz`). Every disagreement found becomes a case in test_language.py.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.language_fixture import AS_OF
from transforms.contracts.odcs import load_contract
from transforms.engines.membership import event_features, segment_members
from transforms.language.compiler import compile_segments
from transforms.language.definitions import Segment, SegmentFile
from transforms.language.sql import run_query

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
PEOPLE = load_contract(CONTRACTS, "people")
EVENTS = load_contract(CONTRACTS, "events")
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SPARK_EXAMPLES = {"ci": 15, "fuzz": 300}[os.environ.get("HYPOTHESIS_PROFILE", "ci")]

EVENT_NAMES = ["purchase", "login", "page_viewed"]
nullable = lambda values: st.one_of(st.none(), values)  # noqa: E731

# --- random expressions of the language, typed so they compile --------------------------------

num_literal = st.one_of(
    st.integers(-3, 60).map(str),
    st.sampled_from(["0.5", "2.5", "-1.5", "100.25", "0", "NULL"]),
)
window = st.sampled_from(
    [
        "",
        ", within => '1 day'",
        ", within => '7 days'",
        ", within => INTERVAL 30 DAY",
        ", since => DATE '2026-03-20', until => DATE '2026-03-30'",
        ", ago => ('7 days', '1 day')",
        ", ago => ('30 days', '7 days')",
        ", ago => (INTERVAL 25 HOUR, INTERVAL 23 HOUR)",
        ", ago => ('11 days', '0 days'), since => DATE '2026-03-25'",
    ]
)
event_filter = st.sampled_from(
    [
        "",
        ", where => amount > 10",
        ", where => currency = 'USD'",
        ", where => amount IS NULL",
        ", where => currency IN ('EUR', NULL)",
        # event properties: fields of the `properties` struct, NULL where the event has none
        ", where => properties.plan = 'pro'",
        ", where => properties.source <> 'web'",
        ", where => properties.price > 10",
        ", where => properties.price IS NULL",
        ", where => coalesce(properties.product_id, 'none') IN ('sku_1', 'none')",
        ", where => properties.price < amount AND properties.source = 'app'",
    ]
)
event_name = st.sampled_from([*EVENT_NAMES, "*"])


@st.composite
def event_call(draw, kind: str) -> str:
    name, win, flt = draw(event_name), draw(window), draw(event_filter)
    if kind == "count":
        if draw(st.booleans()):
            return f"event_count('{name}'{win}{flt})"
        column = draw(
            st.sampled_from(
                ["currency", "amount", "name", "timestamp", "properties.plan", "properties.price"]
            )
        )
        return f"event_count_distinct('{name}', {column}{win}{flt})"
    aggregate = draw(st.sampled_from(["event_sum", "event_min", "event_max", "event_avg"]))
    column = draw(st.sampled_from(["amount", "properties.price"]))
    return f"{aggregate}('{name}', {column}{win}{flt})"


property_filter = event_filter.filter(lambda text: "properties." in text)
property_condition = st.one_of(
    st.tuples(event_name, window, property_filter).map(
        lambda t: f"event_count('{t[0]}'{t[1]}{t[2]}) >= 1"
    ),
    st.tuples(
        st.sampled_from(["event_sum", "event_min", "event_max", "event_avg"]),
        event_name,
        window,
        event_filter,
        st.sampled_from(["> 10", "<= 9.5", "IS NULL", "= 0"]),
    ).map(lambda t: f"{t[0]}('{t[1]}', properties.price{t[2]}{t[3]}) {t[4]}"),
    st.tuples(event_name, window, property_filter).map(
        lambda t: f"performed_in_order('{t[0]}', '{t[0]}'{t[1]}{t[2]})"
    ),
)
"""A condition on event properties, whatever else the predicate reads."""


def numbers(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(
            [
                "age",
                "lifetime_value",
                "days_since(created_at)",
                "date_diff('day', created_at, as_of())",
                "length(country)",
                "bucket(2)",
                "bucket(10, 'x')",
                "bucket(1000000, 'salt')",
                "days_in_segment('t')",
            ]
        ),
        num_literal,
        event_call("count"),
        event_call("value"),
    )
    if depth <= 0:
        return leaves
    smaller = numbers(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(smaller, st.sampled_from(["+", "-", "*", "/"]), smaller).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        smaller.map(lambda x: f"abs({x})"),
        smaller.map(lambda x: f"round({x}, 1)"),
        smaller.map(lambda x: f"CAST({x} AS BIGINT)"),
        st.tuples(smaller, smaller).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        st.tuples(conditions(depth - 1), smaller, smaller).map(
            lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"
        ),
    )


def texts(depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(
        ["plan", "country", "email", "first_name", "'pro'", "'US'", "NULL", "CAST(age AS VARCHAR)"]
    )
    if depth <= 0:
        return leaves
    smaller = texts(depth - 1)
    return st.one_of(
        leaves,
        smaller.map(lambda x: f"lower({x})"),
        smaller.map(lambda x: f"upper({x})"),
        smaller.map(lambda x: f"trim({x})"),
        st.tuples(smaller, smaller).map(lambda t: f"({t[0]} || {t[1]})"),
        st.tuples(smaller, smaller).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
    )


def conditions(depth: int) -> st.SearchStrategy[str]:
    compare = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
    leaves = st.one_of(
        st.tuples(numbers(min(depth, 1)), compare, numbers(min(depth, 1))).map(" ".join),
        st.tuples(texts(min(depth, 1)), compare, texts(min(depth, 1))).map(" ".join),
        numbers(0).map(lambda x: f"{x} IS NULL"),
        texts(0).map(lambda x: f"{x} IS NOT NULL"),
        st.tuples(
            texts(0),
            st.lists(st.sampled_from(["'pro'", "'free'", "'US'", "NULL"]), min_size=1, max_size=3),
            st.booleans(),
        ).map(lambda t: f"{t[0]} {'NOT ' if t[2] else ''}IN ({', '.join(t[1])})"),
        st.tuples(numbers(0), num_literal, num_literal).map(
            lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"
        ),
        st.tuples(
            texts(0),
            st.sampled_from(["'%a%'", "'p_o'", "'%.com'", "'A%'"]),
            st.sampled_from(["LIKE", "NOT LIKE", "ILIKE"]),
        ).map(lambda t: f"{t[0]} {t[2]} {t[1]}"),
        st.sampled_from(
            [
                "email_opt_in",
                "created_at < as_of() - INTERVAL 30 DAY",
                "trial_ends_on <= current_date",
                "created_at >= '2026-03-01'",
                "date_trunc('month', created_at) = TIMESTAMP '2026-03-01 00:00:00'",
                "last_event_at('*') > as_of() - INTERVAL 3 DAY",
                "first_event_at('login') IS NULL",
                "TRUE",
                "NULL",
            ]
        ),
        st.tuples(event_name, window, event_filter).map(
            lambda t: f"performed('{t[0]}'{t[1]}{t[2]})"
        ),
        property_condition,
        st.tuples(
            st.lists(event_name, min_size=2, max_size=4),
            st.sampled_from(
                ["", ", gap => '1 day'", ", gap => INTERVAL 25 HOUR", ", gap => '7 days'"]
            ),
            window,
            event_filter,
        ).map(lambda t: f"performed_in_order({', '.join(map(repr, t[0]))}{t[1]}{t[2]}{t[3]})"),
        st.tuples(
            event_name,
            st.sampled_from(["'1 day'", "'7 days'", "INTERVAL 12 HOUR"]),
            st.integers(1, 5),
            st.integers(1, 5),
            st.sampled_from(["", ", times => 2"]),
            event_filter,
        ).map(
            lambda t: (
                f"performed_regularly('{t[0]}', every => {t[1]}, periods => {t[2]},"
                f" at_least => {min(t[2], t[3])}{t[4]}{t[5]})"
            )
        ),
    )
    if depth <= 0:
        return leaves
    smaller = conditions(depth - 1)
    return st.one_of(
        leaves,
        smaller.map(lambda x: f"NOT ({x})"),
        st.tuples(smaller, st.sampled_from(["AND", "OR"]), smaller).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
    )


# --- random small tables ------------------------------------------------------------------------


def _stamp(hours: int) -> datetime:
    return AS_OF - timedelta(hours=hours)


person = st.fixed_dictionaries(
    {
        "email": nullable(st.sampled_from(["a@example.com", "B@Example.com", "x@y.org", ""])),
        "first_name": nullable(st.sampled_from(["Ada", " Bo ", "", "Élise"])),
        "plan": st.sampled_from(["free", "trial", "pro", "enterprise"]),
        "country": nullable(st.sampled_from(["US", "DE", "us", "FR"])),
        "age": nullable(st.integers(13, 90)),
        "lifetime_value": nullable(st.sampled_from([0.0, 2.5, 10.25, 99.5, 1200.5])),
        "email_opt_in": nullable(st.booleans()),
        "created_at": st.integers(0, 24 * 120).map(_stamp),
        "trial_ends_on": nullable(
            st.integers(-5, 5).map(lambda d: date(2026, 3, 31) + timedelta(d))
        ),
    }
)
event = st.fixed_dictionaries(
    {
        "person": st.integers(0, 9),
        "name": st.sampled_from(EVENT_NAMES),
        # hours before as_of, biased to the edges of the windows and since/until bounds
        "timestamp": st.one_of(
            st.sampled_from([0, 1, -1, 23, 24, 25, 48, 168, 169, 264, 265, 720, 721]),
            st.integers(-48, 24 * 40),
        ).map(_stamp),
        "amount": nullable(st.sampled_from([0.0, 5.0, 10.0, 12.5, 250.0])),
        "currency": nullable(st.sampled_from(["USD", "EUR", "GBP"])),
        "properties": nullable(
            st.fixed_dictionaries(
                {
                    "source": nullable(st.sampled_from(["app", "web"])),
                    "plan": nullable(st.sampled_from(["pro", "free", ""])),
                    "product_id": nullable(st.sampled_from(["sku_1", "sku_2"])),
                    "price": nullable(st.sampled_from([0.0, 9.5, 10.0, 12.5, 300.0])),
                }
            )
        ),
    }
)


def _tables(people_rows: list[dict], event_rows: list[dict], folder: Path) -> tuple[Path, Path]:
    people = pl.DataFrame(
        [{"person_id": f"p{i}", **row} for i, row in enumerate(people_rows)],
        schema=PEOPLE.polars_schema(),
    )
    events = pl.DataFrame(
        [
            {
                "event_id": f"e{i}",
                "person_id": f"p{row['person']}",
                "name": row["name"],
                "timestamp": row["timestamp"],
                "amount": row["amount"],
                "currency": row["currency"],
                "properties": row["properties"],
            }
            for i, row in enumerate(event_rows)
        ],
        schema=EVENTS.polars_schema(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    people.write_parquet(folder / "people.parquet")
    events.write_parquet(folder / "events.parquet")
    return folder / "people.parquet", folder / "events.parquet"


TENURED = "plan IN ('pro', 'trial')"
"""The segment `t` the predicates' days_in_segment('t') reads."""


def _previous(members: dict[int, int], folder: Path) -> Path:
    """The previous run's members of `t`: person -> days before the run date they entered."""
    day = AS_OF.date() - timedelta(days=1)
    frame = pl.DataFrame(
        {
            "segment_id": ["t"] * len(members),
            "person_id": [f"p{person}" for person in members],
            "member_since": [day - timedelta(days=days) for days in members.values()],
        },
        schema={"segment_id": pl.String, "person_id": pl.String, "member_since": pl.Date},
    )
    frame.write_parquet(folder / "previous.parquet")
    return folder / "previous.parquet"


def _workspace(predicate: str):
    """The workspace of `predicate` (segment `s`) and `t`, or None when the compiler refuses
    it (the generator can build ill-typed predicates: refusing them is fine)."""
    segments = {
        "s": Segment("s", "s.yaml", SegmentFile(name="s", type="data_driven", where=predicate)),
        "t": Segment("t", "t.yaml", SegmentFile(name="t", type="data_driven", where=TENURED)),
    }
    workspace, problems = compile_segments(segments, PEOPLE, EVENTS, AS_OF)
    assert all(p.file == "s.yaml" for p in problems)
    return None if problems else workspace


def _polars_members(workspace, people_path: Path, events_path: Path, previous: Path):
    features = event_features(pl.scan_parquet(events_path), workspace)
    members = segment_members(
        pl.scan_parquet(people_path), features, workspace, previous=pl.scan_parquet(previous)
    ).collect()
    return set(members.select("segment_id", "person_id").iter_rows())


tables = {
    "people_rows": st.lists(person, min_size=1, max_size=10),
    "event_rows": st.lists(event, max_size=30),
    "previous": st.dictionaries(st.integers(0, 9), st.integers(0, 10), max_size=10),
}


@given(predicate=conditions(2), **tables)
def test_polars_and_duckdb_agree(tmp_path_factory, predicate, people_rows, event_rows, previous):
    folder = tmp_path_factory.mktemp("fuzz")
    people_path, events_path = _tables(people_rows, event_rows, folder)
    previous_path = _previous(previous, folder)
    workspace = _workspace(predicate)
    if workspace is None:
        return
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    query = run_query(
        workspace,
        f"read_parquet('{people_path}')",
        f"read_parquet('{events_path}')",
        previous=f"read_parquet('{previous_path}')",
    )
    theirs = set(con.sql(query).fetchall())
    assert _polars_members(workspace, people_path, events_path, previous_path) == theirs, predicate


@pytest.mark.spark
@settings(max_examples=SPARK_EXAMPLES)
@given(predicate=conditions(2), **tables)
def test_polars_and_spark_agree(
    spark, tmp_path_factory, predicate, people_rows, event_rows, previous
):
    folder = tmp_path_factory.mktemp("fuzz")
    people_path, events_path = _tables(people_rows, event_rows, folder)
    previous_path = _previous(previous, folder)
    workspace = _workspace(predicate)
    if workspace is None:
        return
    spark.read.parquet(str(people_path)).createOrReplaceTempView("fuzz_people")
    spark.read.parquet(str(events_path)).createOrReplaceTempView("fuzz_events")
    spark.read.parquet(str(previous_path)).createOrReplaceTempView("fuzz_previous")
    query = run_query(workspace, "fuzz_people", "fuzz_events", None, "spark", "fuzz_previous")
    theirs = {(row.segment_id, row.person_id) for row in spark.sql(query).collect()}
    assert _polars_members(workspace, people_path, events_path, previous_path) == theirs, predicate


@settings(max_examples=3, deadline=None)
@given(predicates=st.lists(conditions(2), min_size=30, max_size=30))
def test_the_generator_builds_predicates_that_compile(predicates):
    """Guard against a generator that only makes refused predicates (a test that cannot fail)."""
    compiled = sum(_workspace(predicate) is not None for predicate in predicates)
    assert compiled >= 10


@settings(max_examples=3, deadline=None)
@given(predicates=st.lists(property_condition, min_size=20, max_size=20))
def test_the_generator_builds_predicates_on_event_properties(predicates):
    """The leaf on event properties (one of the leaves `conditions` draws from) compiles: the
    engines are compared on predicates reading the properties struct too."""
    assert all("properties." in p for p in predicates)
    assert sum(_workspace(p) is not None for p in predicates) >= 10
