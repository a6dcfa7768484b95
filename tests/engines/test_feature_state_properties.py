"""Event features on event properties fold into the nightly feature state like any other: a
`where =>` on a property is one more filter, a property field one more aggregated column. The
folded runs commit what recomputing from every event (`--full`) and the DuckDB engine's SQL
commit, day after day, with late and early events and events without properties."""

from __future__ import annotations

import json
import random
from datetime import datetime

import polars as pl

from tests.engines.test_feature_state import (
    DAYS,
    PEOPLE,
    definitions_of,
    land_days,
    members,
    run_folded_full_and_duckdb,
)
from tests.support.workspace import (
    with_definitions,
    workspace_settings,
)

DEFINITIONS = {
    "pro_viewers": "event_count('view', within => '3 days', where => properties.plan = 'pro') >= 2",
    "app_spend": "event_sum('purchase', properties.price, within => '4 days',"
    " where => properties.source = 'app') > 6",
    "priced": "event_max('purchase', properties.price, ago => ('5 days', '1 day')) >= 5",
    "average_price": "event_avg('purchase', properties.price) >= 3",
    "no_source": "event_count('*', within => '2 days', where => properties.source IS NULL) >= 3",
    "web_first": "first_event_at('*', within => '6 days', where => properties.source = 'web')"
    " < as_of() - INTERVAL '3 days'",
    "regular_pro": "performed_regularly('view', every => '1 day', periods => 4, at_least => 2,"
    " where => properties.plan = 'pro')",
}


def _properties(rng: random.Random, name: str) -> str:
    """JSON text of an event's properties, or nothing (NULL), or an empty object."""
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.15:
        return "{}"
    value: dict[str, object] = {"source": rng.choice(["app", "web", None])}
    if name == "view":
        value["plan"] = rng.choice(["pro", "free"])
    if name == "purchase" and rng.random() < 0.9:
        value["price"] = rng.randint(0, 40) / 4
    return json.dumps(value)


def properties_row(rng: random.Random, event_id: str, moment: datetime) -> str:
    """An events CSV row whose properties JSON is `_properties`, quoted for CSV."""
    name = rng.choice(["login", "view", "view", "purchase"])
    quoted = _properties(rng, name).replace('"', '""')
    properties = f'"{quoted}"' if quoted else ""
    person = rng.choice(PEOPLE)
    return f"{event_id},{person},{name},{moment:%Y-%m-%dT%H:%M:%S}Z,,,{properties}\n"


def workspace(folder, seed: int):
    settings = with_definitions(
        workspace_settings(folder), folder / "definitions", definitions_of(DEFINITIONS)
    )
    land_days(settings, seed, properties_row)
    return settings


def test_property_features_fold_like_any_other(tmp_path):
    folded, full = workspace(tmp_path / "folded", 7), workspace(tmp_path / "full", 7)
    run_folded_full_and_duckdb(folded, full, workspace(tmp_path / "duckdb", 7))
    for sid in DEFINITIONS:  # every feature decided somebody's membership on some day
        assert any(members(folded, d).filter(pl.col("segment_id") == sid).height for d in DAYS), sid
    some = [d for d in DAYS if members(folded, d).height < len(PEOPLE) * len(DEFINITIONS)]
    assert some  # and nobody is in every segment every day
