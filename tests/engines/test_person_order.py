"""Lookups among people in person order agree with plain set membership, in any order."""

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from transforms.engines.person_order import contains, in_person_order, positions

ids = st.lists(st.text("abc", max_size=3), unique=True, max_size=12)


@given(ids, st.lists(st.text("abc", max_size=3), max_size=12), st.booleans())
def test_contains_is_set_membership_sorted_or_not(known, wanted, ordered):
    known = sorted(known) if ordered else known
    found = contains(pl.Series(known, dtype=pl.String), pl.Series(wanted, dtype=pl.String))
    assert found.to_list() == [w in set(known) for w in wanted]


@given(ids, st.lists(st.text("abc", max_size=3), max_size=12))
def test_positions_point_at_the_wanted_ids(known, wanted):
    known = pl.Series(sorted(known), dtype=pl.String)
    where, found = positions(known, pl.Series(wanted, dtype=pl.String))
    for w, at, there in zip(wanted, where, found, strict=True):
        assert there == (w in known.to_list())
        if there:
            assert known[at] == w


def test_a_frame_out_of_order_is_sorted_and_marked():
    frame = in_person_order(pl.DataFrame({"person_id": ["b", "a", "c"], "n": [2, 1, 3]}))
    assert frame["n"].to_list() == [1, 2, 3]
    assert frame["person_id"].flags["SORTED_ASC"]
