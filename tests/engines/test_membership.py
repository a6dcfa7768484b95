"""People and their event features given in several frames (`membership.with_features`)."""

from __future__ import annotations

import polars as pl

from transforms.engines.membership import with_features


def test_features_in_several_frames_join_as_the_frames_joined_first():
    """The folded features (in person order) and the ones computed from the events (in any
    order) join the snapshot one after the other: each person gets the values of both, NULL
    where a frame has no row for them, and people only in a frame are not added."""
    people = pl.LazyFrame({"person_id": ["a", "b", "c", "d"], "plan": ["x", "y", "x", "y"]})
    folded = pl.LazyFrame({"person_id": ["a", "c", "e"], "visits": [3, 1, 7]}).with_columns(
        pl.col("person_id").set_sorted()
    )
    others = pl.LazyFrame({"person_id": ["d", "z", "a"], "names": [2, 5, 1]})
    joined = with_features(people, [folded, others]).collect().sort("person_id")
    assert joined.to_dict(as_series=False) == {
        "person_id": ["a", "b", "c", "d"],
        "plan": ["x", "y", "x", "y"],
        "visits": [3, None, 1, None],
        "names": [1, None, None, 2],
    }
    frames_first = folded.join(others, on="person_id", how="full", coalesce=True)
    one = people.join(frames_first, on="person_id", how="left").collect().sort("person_id")
    assert joined.equals(one)
    assert with_features(people, frames_first).collect().sort("person_id").equals(one)
