"""Why a person is or is not in a segment on run date D (`segments why`).

A data-driven segment's predicate is shown as its tree: every AND, OR and NOT node and every
condition below them with its truth value for this person (TRUE, FALSE or NULL: SQL logic, a
member when the whole predicate is TRUE), and for each condition the values it saw: attributes
from the people snapshot of D, each event feature with the window it covered, and the member
status of the segments it references. An event feature that reads event properties
(`properties.plan`) also lists, per field, the values the person's events of its name and
window held (before its `where =>`). Every value is computed by the same compiler and the same
feature aggregation as the run itself, over this one person's rows.

A manual segment has no predicate: its explanation is the uploads that named the person (and
the clears and replace-lists that left them out), per committed run up to D, and the person's
membership in the run of D.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
from sqlglot import exp

from transforms.config import Settings
from transforms.contracts.odcs import load_contract
from transforms.engines.membership import event_features, segment_columns
from transforms.engines.tenure import previous_members
from transforms.errors import MissingInputError, SegmentsError
from transforms.language.check import column_path
from transforms.language.compiler import condition_expression
from transforms.language.polars import TIMESTAMP, CompiledDefinitions, Feature, event_column
from transforms.language.semantics import DIALECT, SINCE_PREFIX, bucket_of, run_date
from transforms.language.types import (
    bucket_arguments,
    feature_of,
    is_bucket,
    periods_of,
    segment_of,
    tenure_of,
)
from transforms.runs.materialize import committed_manual_members, compile_definitions
from transforms.storage import lake
from transforms.storage.catalog import read_catalog, read_manifest, scan_table
from transforms.storage.records import Catalog
from transforms.storage.roots import Root


@dataclass
class Condition:
    """A node of the predicate and its truth value for the person."""

    sql: str
    kind: str  # and | or | not | condition
    value: bool | None
    children: list[Condition] = field(default_factory=list)
    saw: list[dict[str, Any]] = field(default_factory=list)
    """For a condition: each attribute, event feature or segment it read, and its value."""


@dataclass
class Explanation:
    person_id: str
    segment_id: str
    date: str
    kind: str  # data_driven | manual
    in_snapshot: bool
    member: bool
    tree: Condition | None = None
    uploads: list[dict[str, Any]] = field(default_factory=list)
    """Manual segments: every upload of a committed run up to D that named the person."""
    committed_member: bool | None = None
    """The person's membership in the committed run of D, if D has one."""


def explain(settings: Settings, person_id: str, segment_id: str, day: date) -> Explanation:
    compiled = compile_definitions(settings, day)
    if segment_id not in compiled.segments:
        close = difflib.get_close_matches(segment_id, list(compiled.segments), n=1)
        raise SegmentsError(
            f"there is no segment '{segment_id}'",
            hint=f"did you mean '{close[0]}'?" if close else "segment ids are definition names",
        )
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    manifest = read_manifest(root, catalog, day)
    committed = None
    if manifest is not None:
        committed = (
            scan_table(root, manifest, "membership")
            .filter((pl.col("segment_id") == segment_id) & (pl.col("person_id") == person_id))
            .collect()
            .height
            > 0
        )
    segment = compiled.segments[segment_id]
    if segment.manual:
        uploads = _uploads_naming(settings, root, catalog, person_id, segment_id, day)
        in_snapshot = _person_row(root, day, person_id).height > 0
        if committed is None:
            raise MissingInputError(
                f"run {day} has not committed: a manual segment's members come from its runs",
                hint=f"run `segments run --date {day}` first, or ask about a committed date",
            )
        return Explanation(
            person_id,
            segment_id,
            day.isoformat(),
            "manual",
            in_snapshot,
            committed,
            uploads=uploads,
            committed_member=committed,
        )
    row, events_seen = _evaluated_row(settings, compiled, day, person_id)
    if row.height == 0:
        return Explanation(
            person_id, segment_id, day.isoformat(), "data_driven", False, False, None, [], committed
        )
    people = load_contract(settings.contracts, "people")
    events = load_contract(settings.contracts, "events")
    tree = _explain(segment.predicate, row, compiled, people, events, events_seen)
    return Explanation(
        person_id,
        segment_id,
        day.isoformat(),
        "data_driven",
        True,
        tree.value is True,
        tree,
        [],
        committed,
    )


def _person_row(root: Root, day: date, person_id: str) -> pl.DataFrame:
    return lake.scan_people(root, day).filter(pl.col("person_id") == person_id).collect()


def _evaluated_row(
    settings: Settings, compiled: CompiledDefinitions, day: date, person_id: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The person's attributes, event features and segment columns, as the run computes them
    (manual segments as the committed run of D has them, or, before D has committed, the latest
    committed run before D: `committed_manual_members`), and the person's events."""
    root = Root(settings.lake, settings.storage_options)
    people = lake.scan_people(root, day).filter(pl.col("person_id") == person_id)
    events = lake.scan_events(root, day).filter(pl.col("person_id") == person_id).collect().lazy()
    manual_ids = [sid for sid, s in compiled.segments.items() if s.manual]
    manual = committed_manual_members(settings, day, manual_ids)
    own_manual = manual.filter(pl.col("person_id") == person_id).lazy()
    features = event_features(events, compiled)
    kept = previous_members(root, day, compiled)
    own_previous = (
        kept.filter(pl.col("person_id") == person_id).lazy() if kept is not None else None
    )
    members = segment_columns(people, features, compiled, own_manual, own_previous).collect()
    return members, events.collect()


def _explain(
    node: exp.Expr,
    row: pl.DataFrame,
    compiled: CompiledDefinitions,
    people: Any,
    events: Any,
    seen_events: pl.DataFrame,
) -> Condition:
    while isinstance(node, exp.Paren):
        node = node.this
    value = row.select(condition_expression(node, compiled, people, events)).item()
    if isinstance(node, (exp.And, exp.Or)):
        kind = "and" if isinstance(node, exp.And) else "or"
        children = [
            _explain(part, row, compiled, people, events, seen_events)
            for part in node.flatten(unnest=True)
        ]
        return Condition(node.sql(dialect=DIALECT), kind, value, children)
    if isinstance(node, exp.Not):
        child = _explain(node.this, row, compiled, people, events, seen_events)
        return Condition(node.sql(dialect=DIALECT), "not", value, [child])
    saw = _seen(node, row, compiled, seen_events)
    return Condition(node.sql(dialect=DIALECT), "condition", value, saw=saw)


PROPERTY_VALUES_SHOWN = 10
"""At most this many distinct values of an event property are listed per feature."""


def _property_values(feature: Feature, events: pl.DataFrame, as_of: datetime) -> dict[str, Any]:
    """For a feature reading event properties: each field it reads -> the distinct values
    (sorted, NULL last, at most `PROPERTY_VALUES_SHOWN`) the person's events held among those
    of its names and window, before its `where =>`."""
    fields = sorted(
        {
            *([feature.column] if feature.column and "." in feature.column else []),
            *(
                column_path(c)
                for c in (feature.filter.find_all(exp.Column) if feature.filter else ())
                if c.table
            ),
        }
    )
    if not fields:
        return {}
    where = feature.filter.sql(dialect=DIALECT) if feature.filter is not None else None
    tests = [test for text, test in feature.tests if text != where]
    if feature.steps is not None and "*" not in feature.steps:
        tests.append(pl.col("name").is_in(list(feature.steps)))
    visible = pl.col("timestamp") <= pl.lit(as_of, dtype=TIMESTAMP)
    counted = events.filter(pl.all_horizontal(visible, *tests))
    shown = {}
    for path in fields:
        values = counted.select(event_column(path).unique().sort(nulls_last=True)).to_series()
        listed = [_plain(v) for v in values.to_list()]
        more = len(listed) - PROPERTY_VALUES_SHOWN
        shown[path] = listed[:PROPERTY_VALUES_SHOWN] + ([f"... {more} more"] if more > 0 else [])
    return shown


def _seen(
    node: exp.Expr, row: pl.DataFrame, compiled: CompiledDefinitions, events: pl.DataFrame
) -> list[dict[str, Any]]:
    """The attributes, features and segments a condition reads, with this person's values."""
    seen: list[dict[str, Any]] = []
    names: set[str] = set()
    for sub in node.walk(bfs=False):
        features = [feature_of(sub)] if feature_of(sub) is not None else []
        if (periods := periods_of(sub)) is not None:
            features = list(periods[0])  # each period's count, the latest first
        for name in features:
            feature = compiled.features[name]
            if feature.name in names:
                continue
            names.add(feature.name)
            entry = {
                "kind": "event feature",
                "name": feature.describe(),
                "value": _plain(row.get_column(feature.name).item()),
                "window": _window(feature, compiled.as_of),
            }
            if values := _property_values(feature, events, compiled.as_of):
                entry["properties"] = values
            seen.append(entry)
        if features:
            continue
        if is_bucket(sub):
            n, salt = bucket_arguments(sub)
            name = f"bucket({n}, '{salt}')"
            if name not in names:
                names.add(name)
                person = row.get_column("person_id").item()
                seen.append({"kind": "bucket", "name": name, "value": bucket_of(person, n, salt)})
        elif (sid := tenure_of(sub)) is not None:
            name = f"days_in_segment('{sid}')"
            if name not in names:
                names.add(name)
                day = run_date(compiled.as_of)
                since = row.get_column(SINCE_PREFIX + sid).item()
                member = row.get_column(compiled.segments[sid].column).item()
                seen.append(
                    {
                        "kind": "days in segment",
                        "name": sid,
                        "value": (day - (since or day)).days if member else None,
                        "member_since": _plain(since or day) if member else None,
                    }
                )
        elif (sid := segment_of(sub)) is not None:
            if sid not in names:
                names.add(sid)
                column = compiled.segments[sid].column
                seen.append(
                    {"kind": "segment", "name": sid, "value": row.get_column(column).item()}
                )
        elif (
            isinstance(sub, exp.Column)
            and _outside_event_call(sub)
            and sub.name not in names
            and sub.name in row.columns
        ):
            names.add(sub.name)
            seen.append(
                {
                    "kind": "attribute",
                    "name": sub.name,
                    "value": _plain(row.get_column(sub.name).item()),
                }
            )
    return seen


def _outside_event_call(column: exp.Column) -> bool:
    """A column of the person, not an event column inside an event function's arguments."""
    parent = column.parent
    while parent is not None:
        if feature_of(parent) is not None or periods_of(parent) is not None:
            return False
        parent = parent.parent
    return True


def _window(feature: Any, as_of: datetime) -> str:
    start = feature.since
    if feature.lookback is not None:
        start = max(filter(None, [start, as_of - feature.lookback]))
    end = min(filter(None, [feature.until, feature.window_end, as_of]))
    shown = f"{start:%Y-%m-%d %H:%M}" if start else "the first event"
    return f"{shown} .. {end:%Y-%m-%d %H:%M} UTC"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return value


def _uploads_naming(
    settings: Settings, root: Root, catalog: Catalog, person_id: str, segment_id: str, day: date
) -> list[dict[str, Any]]:
    """Every applied upload of `segment_id`, in committed runs up to `day`, whose rows the run
    applied to the person, plus each clear and each replace-list not naming them: each file parsed
    and resolved against that run's snapshot by the inbox's own rules (an email shared by
    several people names nobody)."""
    from transforms.manual.inbox import ACTIONS, parse_upload, resolve_people

    inbox = Root(settings.inbox, settings.storage_options)
    found = []
    for run_day in (d for d in catalog.dates if d <= day):
        manifest = read_manifest(root, catalog, run_day)
        people = None
        for report, key in zip(manifest.manual.applied, manifest.manual.files, strict=True):
            if report.segment_id != segment_id:
                continue
            entry = {"run_date": run_day.isoformat(), "file": report.file}
            if report.action == "clear":
                found.append({**entry, "action": "cleared"})
                continue
            try:
                data = inbox.read_bytes(key)
            except FileNotFoundError:
                raise MissingInputError(
                    f"run {run_day} applied {key}, which is no longer in {inbox.url}",
                    hint="restore it from a backup, or check that --inbox is this lake's inbox",
                ) from None
            if people is None:
                people = lake.scan_people(root, run_day).select("person_id", "email").collect()
            rows, _, kind = parse_upload(data, report.action)
            scratch = report.model_copy(deep=True)  # `resolve_people` notes the unknown ids in it
            named = [
                {**entry, "line": line, "action": ACTIONS[action]}
                for pid, action, line in resolve_people(rows, kind, people, scratch)
                if pid == person_id
            ]
            if report.action == "replace" and not named:
                named = [{**entry, "action": "replaced"}]  # the segment became a list without them
            found.extend(named)
    return found
