"""A small workspace crafted to hit the language's edge cases, written as real Parquet.

People cover NULL in every nullable attribute; events sit exactly on window boundaries (at
`as_of - 30 days`, at `as_of`, after `as_of`), on `since`/`until` bounds, carry NULL amounts,
several currencies, and one belongs to a person who is not in the snapshot.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

DAY = date(2026, 3, 30)
AS_OF = datetime(2026, 3, 31, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")


def _t(days_before: float = 0, **delta: float) -> datetime:
    return AS_OF - timedelta(days=days_before) + timedelta(**delta)


PEOPLE = pl.DataFrame(
    {
        "person_id": ["p01", "p02", "p03", "p04", "p05", "p06", "p07", "p08", "p09", "p10", "p11"],
        "email": [
            "ada@example.com",
            "bo@Example.COM",
            None,
            "cy+x@example.org",
            "dee@x.invalid",
            "eli@example.com",
            "fay@example.com",
            "gus@example.com",
            "hana@example.com",
            "ivo@example.com",
            None,
        ],
        "first_name": ["Ada", " Bo ", "Cy", None, "Test Dee", "Eli", "Fay", "Gus", "", "Ivo", None],
        "plan": [
            "pro",
            "trial",
            "free",
            "enterprise",
            "trial",
            "pro",
            "free",
            "free",
            "trial",
            "pro",
            "free",
        ],
        "country": ["US", "DE", None, "FR", "us", "GB", "DE", None, "NL", "US", None],
        "age": [36, 17, None, 45, 30, 21, None, 60, 29, 30, None],
        "lifetime_value": [250.0, 0.0, None, 1200.5, 30.0, 75.25, 0.0, None, 10.0, 199.99, 2.5],
        "email_opt_in": [True, False, None, True, True, False, True, None, True, False, None],
        "created_at": [
            _t(400),
            _t(3),
            _t(30),
            _t(30, seconds=1),
            _t(800),
            _t(0, seconds=-1),
            _t(60),
            _t(7),
            _t(6, hours=23),
            _t(365),
            _t(0, microseconds=1),
        ],
        "trial_ends_on": [
            None,
            date(2026, 4, 2),
            None,
            None,
            date(2026, 3, 30),
            None,
            None,
            None,
            date(2026, 3, 31),
            None,
            None,
        ],
    },
    schema_overrides={"created_at": TS},
)

_EVENTS = [
    # event_id, person, name, timestamp, amount, currency
    ("e01", "p01", "purchase", _t(1), 120.0, "USD"),
    ("e02", "p01", "purchase", _t(10), 80.0, "EUR"),
    ("e03", "p01", "login", _t(2), None, None),
    ("e04", "p02", "purchase", _t(30), 500.0, "USD"),  # exactly as_of - 30 days: outside 30d
    ("e05", "p02", "purchase", _t(0), 20.0, "USD"),  # exactly as_of: inside
    ("e06", "p02", "login", _t(20), None, None),
    ("e07", "p03", "purchase", _t(-1), 999.0, "USD"),  # after as_of: never counts
    ("e08", "p03", "page_viewed", _t(5), None, None),
    ("e09", "p04", "purchase", _t(30, seconds=1), None, "USD"),  # just inside 30d, NULL amount
    ("e10", "p04", "purchase", _t(15), 300.0, "GBP"),
    ("e11", "p04", "login", _t(15), None, None),
    ("e12", "p05", "page_viewed", _t(1), None, None),
    ("e13", "p05", "page_viewed", _t(2), None, None),
    ("e14", "p05", "page_viewed", _t(3), None, None),
    ("e15", "p06", "purchase", datetime(2026, 3, 1, tzinfo=UTC), 60.0, "USD"),  # on since
    ("e16", "p06", "purchase", datetime(2026, 3, 15, tzinfo=UTC), 40.0, "USD"),  # on until
    ("e17", "p07", "login", _t(45), None, None),
    ("e18", "p07", "app_installed", _t(3), None, None),
    ("e19", "stranger", "purchase", _t(1), 5000.0, "USD"),  # not in the snapshot
    ("e20", "p10", "purchase", _t(5), 0.0, "USD"),
    ("e21", "p10", "purchase", _t(6), 150.0, "USD"),
]


def _props(source=None, plan=None, product_id=None, price=None) -> dict:
    return {"source": source, "plan": plan, "product_id": product_id, "price": price}


# the events contract's `properties` (a struct of its declared fields), by event id; None: NULL
_PROPERTIES = {
    "e01": _props("app", product_id="sku_1", price=100.0),
    "e02": _props("web", product_id="sku_2", price=80.0),
    "e03": _props("app"),
    "e04": _props("web", product_id="sku_1", price=500.0),
    "e05": _props("app", product_id="sku_3"),  # NULL price
    "e06": None,
    "e07": _props("app", product_id="sku_1", price=999.0),
    "e08": _props("web", plan="pro"),
    "e09": _props(product_id="sku_2", price=0.0),
    "e10": _props("app", product_id="sku_2", price=300.0),
    "e11": _props("web"),
    "e12": _props(plan="pro"),
    "e13": _props(plan="free"),
    "e14": _props(plan="pro"),
    "e15": _props("web", product_id="sku_3", price=60.0),
    "e16": None,
    "e17": _props("app"),
    "e18": _props("app"),
    "e19": _props("app", price=5000.0),
    "e20": _props("web", product_id="sku_1", price=0.0),
    "e21": _props("web", product_id="sku_1", price=150.0),
}
PROPERTIES_TYPE = pl.Struct(
    {"source": pl.String, "plan": pl.String, "product_id": pl.String, "price": pl.Float64}
)
EVENTS = pl.DataFrame(
    _EVENTS,
    schema={
        "event_id": pl.String,
        "person_id": pl.String,
        "name": pl.String,
        "timestamp": TS,
        "amount": pl.Float64,
        "currency": pl.String,
    },
    orient="row",
).with_columns(
    pl.Series("properties", [_PROPERTIES[event[0]] for event in _EVENTS], dtype=PROPERTIES_TYPE)
)


def write_fixture(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    people, events = folder / "people.parquet", folder / "events.parquet"
    PEOPLE.write_parquet(people)
    EVENTS.write_parquet(events)
    return people, events
