"""Row checks the ingest runs in Polars over a whole table, against plain Python."""

from __future__ import annotations

from collections import Counter

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from transforms.contracts.rows import duplicated_positions

VALUES = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "dd", ""])), max_size=40)


@given(VALUES, st.data())
def test_duplicated_positions_are_the_copies_of_repeated_values(values, data):
    rows = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    counted = Counter(v for v, row in zip(values, rows, strict=True) if row and v is not None)
    expected = [
        i for i, (v, row) in enumerate(zip(values, rows, strict=True)) if row and counted[v] > 1
    ]
    found = duplicated_positions(
        pl.Series(values, dtype=pl.String), pl.Series(rows, dtype=pl.Boolean)
    )
    assert found.to_list() == expected
