"""The enter/exit diff: exactly the set differences, with the most specific reason."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.runs.diff import DiffContext, diff

D1, D2 = date(2026, 3, 30), date(2026, 3, 31)


def frame(rows: list[tuple[str, str]], since: date | None = None) -> pl.DataFrame:
    data = pl.DataFrame(
        rows, schema={"segment_id": pl.String, "person_id": pl.String}, orient="row"
    )
    return data.with_columns(member_since=pl.lit(since)) if since else data


def context(**overrides) -> DiffContext:
    values = dict(
        run_date=D2,
        previous_run_date=D1,
        previous_definitions={"a": "h1", "b": "h2"},
        current_definitions={"a": "h1", "b": "h2"},
        snapshot=pl.DataFrame({"person_id": ["p1", "p2", "p3", "p4"]}),
        manual_actions=pl.DataFrame(
            schema={"segment_id": pl.String, "person_id": pl.String, "action": pl.String}
        ),
    )
    values.update(overrides)
    return DiffContext(**values)


def as_set(changes: pl.DataFrame) -> set[tuple]:
    return set(changes.select("segment_id", "person_id", "change", "reason").rows())


def test_changes_are_exactly_the_set_differences_both_ways():
    previous = frame([("a", "p1"), ("a", "p2"), ("b", "p1")], D1)
    current = frame([("a", "p2"), ("a", "p3"), ("b", "p1"), ("b", "p4")])
    changes, _ = diff(previous, current, context())
    assert as_set(changes) == {
        ("a", "p1", "exited", "condition"),
        ("a", "p3", "entered", "condition"),
        ("b", "p4", "entered", "condition"),
    }
    assert changes["previous_run_date"].to_list() == [D1] * 3


def test_first_run_enters_everyone_as_new_segment_with_no_previous_date():
    current = frame([("a", "p1"), ("b", "p2")])
    changes, membership = diff(
        None, current, context(previous_run_date=None, previous_definitions={})
    )
    assert as_set(changes) == {
        ("a", "p1", "entered", "new_segment"),
        ("b", "p2", "entered", "new_segment"),
    }
    assert changes["previous_run_date"].to_list() == [None, None]
    assert membership["member_since"].to_list() == [D2, D2]


def test_member_since_carries_over_for_people_who_stay():
    previous = frame([("a", "p1")], date(2026, 1, 1))
    _, membership = diff(previous, frame([("a", "p1"), ("a", "p2")]), context())
    assert membership.rows() == [("a", "p1", date(2026, 1, 1)), ("a", "p2", D2)]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"current_definitions": {"b": "h2"}}, "segment_deleted"),
        ({"current_definitions": {"a": "changed", "b": "h2"}}, "definition_changed"),
        ({"snapshot": pl.DataFrame({"person_id": ["p2"]})}, "left_snapshot"),
        (
            {
                "manual_actions": pl.DataFrame(
                    {"segment_id": ["a"], "person_id": ["p1"], "action": ["removed"]}
                )
            },
            "removed",
        ),
        (
            {
                "manual_actions": pl.DataFrame(
                    {"segment_id": ["a"], "person_id": ["p1"], "action": ["cleared"]}
                )
            },
            "cleared",
        ),
    ],
)
def test_exit_reasons(overrides, expected):
    changes, _ = diff(frame([("a", "p1")], D1), frame([], None), context(**overrides))
    assert as_set(changes) == {("a", "p1", "exited", expected)}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"previous_definitions": {"b": "h2"}}, "new_segment"),
        ({"current_definitions": {"a": "changed", "b": "h2"}}, "definition_changed"),
        (
            {
                "manual_actions": pl.DataFrame(
                    {"segment_id": ["a"], "person_id": ["p1"], "action": ["added"]}
                )
            },
            "added",
        ),
    ],
)
def test_entry_reasons(overrides, expected):
    changes, _ = diff(frame([], D1), frame([("a", "p1")]), context(**overrides))
    assert as_set(changes) == {("a", "p1", "entered", expected)}


def test_the_most_specific_reason_wins():
    both = context(
        current_definitions={"a": "changed", "b": "h2"},
        snapshot=pl.DataFrame({"person_id": ["p2"]}),
    )
    changes, _ = diff(frame([("a", "p1")], D1), frame([]), both)
    assert as_set(changes) == {("a", "p1", "exited", "definition_changed")}


KEYS = st.tuples(st.sampled_from(["a", "ab", "b", "b_2"]), st.text("xy\x00é", max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.sets(KEYS, max_size=12), st.sets(KEYS, max_size=12), st.randoms())
def test_the_merge_is_the_set_difference_whatever_the_input_order(before, after, rng):
    """The diff merges both memberships in key order (sorting an input only if it is not):
    the result is the set differences and member_since, in key order, for any order of rows."""
    previous_rows, current_rows = sorted(before), sorted(after)
    rng.shuffle(current_rows)  # the current membership may come in any order
    if rng.random() < 0.5:  # and so may the previous one, now and then
        rng.shuffle(previous_rows)
    since = {key: D1 - timedelta(days=i) for i, key in enumerate(sorted(before))}
    previous = frame(previous_rows, D1).with_columns(
        member_since=pl.Series([since[k] for k in previous_rows], dtype=pl.Date)
    )
    changes, membership = diff(previous, frame(current_rows), context())
    assert membership.rows() == [(*k, since.get(k, D2)) for k in sorted(after)]
    moves = [(*k, "entered") for k in after - before] + [(*k, "exited") for k in before - after]
    assert changes.select("segment_id", "person_id", "change").rows() == sorted(moves)
