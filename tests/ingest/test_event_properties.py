"""Event properties at ingest: the JSON object of the events contract's `properties` column becomes
a typed struct of its declared fields, from CSV, JSON lines and Parquet (text or struct); rows
whose value is not a JSON object or holds a declared field of another type are quarantined with
the rule broken; undeclared keys are dropped and counted."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import (
    CONTRACTS,
    DAY,
    EVENTS_HEADER,
    PEOPLE_HEADER,
    events_contract_with_typed_fields,
    lake_table,
    land,
    parquet_bytes,
    person_row,
)
from transforms.errors import ContractError
from transforms.ingest.step import ingest
from transforms.storage.lake import scan_events
from transforms.storage.roots import Root

FIELDS = ("source", "plan", "product_id", "price")


def csv_row(event_id: str, properties: str | None) -> str:
    quoted = "" if properties is None else '"' + properties.replace('"', '""') + '"'
    return f"{event_id},p01,purchase,2026-03-30T09:00:00Z,10,USD,{quoted}\n"


def land_people(settings) -> None:
    land(settings, "people", "people.csv", PEOPLE_HEADER + person_row("p01"))


def events_by_id(settings) -> dict[str, dict | None]:
    events = lake_table(settings, f"events/ingest_date={DAY}")
    assert events.schema["properties"] == pl.Struct(
        {"source": pl.String, "plan": pl.String, "product_id": pl.String, "price": pl.Float64}
    )
    return dict(zip(events["event_id"], events["properties"].to_list(), strict=True))


def quarantined(settings) -> dict[str, tuple[str, str, str]]:
    rows = lake_table(settings, f"quarantine/events/ingest_date={DAY}")
    return {
        r["event_id"]: (r["properties"], r["_rules"], r["_reason"])
        for r in rows.iter_rows(named=True)
    }


def test_csv_json_text_becomes_typed_fields_and_bad_rows_are_quarantined(settings):
    land_people(settings)
    rows = [
        csv_row("ok", '{"plan": "pro", "price": 12.5, "color": "red", "size": null}'),
        csv_row("int_price", '{"price": 3, "product_id": "sku_1"}'),
        csv_row("empty", None),
        csv_row("json_null", "null"),
        csv_row("no_keys", "{}"),
        csv_row("not_json", "{plan: pro}"),
        csv_row("array", "[1, 2]"),
        csv_row("text_price", '{"price": "12.5", "color": "blue"}'),
        csv_row("bool_plan", '{"plan": true}'),
        csv_row("nan", '{"price": NaN}'),
    ]
    land(settings, "events", "events.csv", EVENTS_HEADER + "".join(rows))
    report = ingest(settings, DAY).tables["events"]

    kept = events_by_id(settings)
    assert kept == {
        "ok": {"source": None, "plan": "pro", "product_id": None, "price": 12.5},
        "int_price": {"source": None, "plan": None, "product_id": "sku_1", "price": 3.0},
        "empty": None,
        "json_null": None,
        "no_keys": dict.fromkeys(FIELDS),
    }
    refused = quarantined(settings)
    assert {k: v[1] for k, v in refused.items()} == {
        "not_json": "properties:type",
        "array": "properties:type",
        "text_price": "properties.price:type",
        "bool_plan": "properties.plan:type",
        "nan": "properties:type",
    }
    assert refused["not_json"][0] == "{plan: pro}"  # the text as landed
    assert refused["not_json"][2] == "properties '{plan: pro}' is not a JSON object"
    assert (
        "properties.price" in refused["text_price"][2]
        and "not a number" in refused["text_price"][2]
    )
    assert report.broken_rules == {
        "properties:type": 3,
        "properties.price:type": 1,
        "properties.plan:type": 1,
    }
    # `size` held null: nothing was dropped; the quarantined row's `color` is counted too
    assert report.undeclared_keys == {"properties.color": 2}
    assert report.quarantined == 5 and report.rows_written == 5


def test_jsonl_objects_and_json_text_read_alike(settings):
    land_people(settings)
    lines = [
        {"event_id": "obj", "person_id": "p01", "name": "login",
         "timestamp": "2026-03-30T09:00:00Z", "properties": {"source": "app", "extra": 1}},
        {"event_id": "text", "person_id": "p01", "name": "login",
         "timestamp": "2026-03-30T09:00:00Z", "properties": '{"source": "app", "extra": 1}'},
        {"event_id": "wrong", "person_id": "p01", "name": "login",
         "timestamp": "2026-03-30T09:00:00Z", "properties": {"source": 7}},
    ]  # fmt: skip
    land(settings, "events", "events.jsonl", "\n".join(json.dumps(line) for line in lines))
    report = ingest(settings, DAY).tables["events"]
    app = {"source": "app", "plan": None, "product_id": None, "price": None}
    assert events_by_id(settings) == {"obj": app, "text": app}
    assert {k: v[1] for k, v in quarantined(settings).items()} == {
        "wrong": "properties.source:type"
    }
    assert report.undeclared_keys == {"properties.extra": 2}


def test_parquet_struct_and_parquet_json_text(settings):
    land_people(settings)
    base = {
        "person_id": ["p01", "p01", "p01"],
        "name": ["purchase"] * 3,
        "timestamp": ["2026-03-30T09:00:00Z"] * 3,
    }
    struct = pl.DataFrame(
        {
            **base,
            "event_id": ["s1", "s2", "s3"],
            "properties": [
                {"price": "9.5", "plan": "pro", "coupon": "X"},  # text converts as a column's
                {"price": "cheap", "plan": None, "coupon": None},
                None,
            ],
        }
    )
    text = pl.DataFrame(
        {**base, "event_id": ["t1", "t2", "t3"], "properties": ['{"price": 4}', "oops", None]}
    )
    land(settings, "events", "struct.parquet", parquet_bytes(struct))
    land(settings, "events", "text.parquet", parquet_bytes(text))
    report = ingest(settings, DAY).tables["events"]
    assert events_by_id(settings) == {
        "s1": {"source": None, "plan": "pro", "product_id": None, "price": 9.5},
        "s3": None,
        "t1": {"source": None, "plan": None, "product_id": None, "price": 4.0},
        "t3": None,
    }
    refused = quarantined(settings)
    assert {k: v[1] for k, v in refused.items()} == {
        "s2": "properties.price:type",
        "t2": "properties:type",
    }
    assert json.loads(refused["s2"][0]) == {"price": "cheap", "plan": None, "coupon": None}
    assert report.undeclared_keys == {"properties.coupon": 1}


def test_the_ingest_report_prints_the_dropped_keys(settings, capsys):
    from transforms.cli import render

    land_people(settings)
    land(
        settings,
        "events",
        "events.csv",
        EVENTS_HEADER + csv_row("a", '{"utm": "x", "plan": "pro"}') + csv_row("b", '{"utm": 1}'),
    )
    report = ingest(settings, DAY)
    render.ingest(report)
    assert "properties.utm (2 rows)" in capsys.readouterr().err
    manifest = json.loads((settings_path(settings) / "manifest.json").read_text())
    assert manifest["tables"]["events"]["undeclared_keys"] == {"properties.utm": 2}


def settings_path(settings):
    from pathlib import Path

    return Path(settings.lake) / "ingest" / f"ingest_date={DAY}"


def typed_contracts(tmp_path):
    """The repository's contracts with properties fields of every other type."""
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, folder)
    (folder / "events.odcs.yaml").write_text(events_contract_with_typed_fields())
    return str(folder)


def test_integer_boolean_date_and_timestamp_fields(settings, tmp_path):
    settings = settings.model_copy(update={"contracts": typed_contracts(tmp_path)})
    land_people(settings)
    rows = [
        csv_row(
            "ok",
            '{"seats": 3, "trial": true, "renews_on": "2026-04-01",'
            ' "seen_at": "2026-03-30T10:00:00+02:00"}',
        ),
        csv_row("whole", '{"seats": 4.0, "seen_at": "2026-03-30"}'),
        csv_row("fraction", '{"seats": 4.5}'),
        csv_row("huge", '{"seats": 9223372036854775808}'),
        csv_row("flag_text", '{"trial": "yes"}'),
        csv_row("seats_bool", '{"seats": true}'),
        csv_row("bad_date", '{"renews_on": "2026-02-30"}'),
        csv_row("bad_time", '{"seen_at": "yesterday", "renews_on": 20260401}'),
    ]
    land(settings, "events", "events.csv", EVENTS_HEADER + "".join(rows))
    report = ingest(settings, DAY).tables["events"]
    events = lake_table(settings, f"events/ingest_date={DAY}")
    assert events.schema["properties"] == pl.Struct(
        {
            "seats": pl.Int64,
            "trial": pl.Boolean,
            "renews_on": pl.Date,
            "seen_at": pl.Datetime("us", "UTC"),
            **{f: pl.String for f in ("source", "plan", "product_id")},
            "price": pl.Float64,
        }
    )
    kept = {
        r["event_id"]: {k: v for k, v in r["properties"].items() if v is not None}
        for r in events.iter_rows(named=True)
    }
    assert kept == {
        "ok": {
            "seats": 3,
            "trial": True,
            "renews_on": date(2026, 4, 1),
            "seen_at": datetime(2026, 3, 30, 8, tzinfo=UTC),
        },
        "whole": {"seats": 4, "seen_at": datetime(2026, 3, 30, tzinfo=UTC)},
    }
    assert {k: v[1] for k, v in quarantined(settings).items()} == {
        "fraction": "properties.seats:type",
        "huge": "properties.seats:type",
        "flag_text": "properties.trial:type",
        "seats_bool": "properties.seats:type",
        "bad_date": "properties.renews_on:type",
        "bad_time": "properties.renews_on:type, properties.seen_at:type",
    }
    assert report.undeclared_keys == {}


def text_properties_contracts(tmp_path):
    """The repository's contracts as they were before properties was an object: JSON text."""
    folder = tmp_path / "old-contracts"
    shutil.copytree(CONTRACTS, folder)
    events = folder / "events.odcs.yaml"
    text = events.read_text()
    start = text.index("        logicalType: object")
    events.write_text(text[:start] + "        logicalType: string\n")
    return str(folder)


def test_an_earlier_date_of_another_form_is_named_until_ingested_again(settings, tmp_path):
    day2 = DAY + timedelta(days=1)
    old = settings.model_copy(update={"contracts": text_properties_contracts(tmp_path)})
    for day in (DAY, day2):
        land(settings, "people", "people.csv", PEOPLE_HEADER + person_row("p01"), day)
        rows = csv_row(f"{day}", '{"source": "app"}').replace("2026-03-30T", f"{day}T")
        land(settings, "events", "events.csv", EVENTS_HEADER + rows, day)
    ingest(old, DAY)
    assert lake_table(settings, f"events/ingest_date={DAY}").schema["properties"] == pl.String

    with pytest.raises(ContractError) as refused:
        ingest(settings, day2)
    assert f"the events ingested on {DAY} hold properties as String" in str(refused.value)
    assert f"segments ingest --date {DAY}" in refused.value.hint
    assert not (Path(settings.lake) / f"events/ingest_date={day2}").exists()

    ingest(settings, DAY)  # again, with the contract of now
    ingest(settings, day2)
    events = scan_events(Root(settings.lake), day2).collect()
    assert events["properties"].struct.field("source").to_list() == ["app", "app"]


def test_a_list_or_object_in_a_declared_field_is_of_the_wrong_type(settings):
    land_people(settings)
    base = {"person_id": ["p01"] * 2, "name": ["login"] * 2, "timestamp": ["2026-03-30"] * 2}
    struct = pl.DataFrame(
        {**base, "event_id": ["s1", "s2"], "properties": [{"plan": ["pro"]}, {"plan": None}]}
    )
    land(settings, "events", "struct.parquet", parquet_bytes(struct))
    text = csv_row("t1", '{"plan": {"tier": "pro"}}') + csv_row("t2", '{"source": ["app"]}')
    land(settings, "events", "text.csv", EVENTS_HEADER + text)
    ingest(settings, DAY)
    assert {k: v[1] for k, v in quarantined(settings).items()} == {
        "s1": "properties.plan:type",
        "t1": "properties.plan:type",
        "t2": "properties.source:type",
    }
    assert list(events_by_id(settings)) == ["s2"]
