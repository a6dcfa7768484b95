"""How text reads as a typed value: the words of a boolean and the ISO forms of dates and
timestamps.

The rules are shared by everything that turns text into values: typing landing columns
(`transforms.contracts.coerce`), and a segment predicate's CAST and quoted constants, on Polars
and in the generated SQL (docs/segment_language.md).
"""

from __future__ import annotations

TRUE_TEXT = ("true", "t", "1", "yes", "y")
FALSE_TEXT = ("false", "f", "0", "no", "n")
"""Boolean text, compared in lower case without surrounding spaces."""

ISO_DATE = r"\d{4}-\d{2}-\d{2}"
"""A date in text: YYYY-MM-DD."""
ISO_TIMESTAMP = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([zZ]|[+-]\d{2}:?\d{2})?)?"
"""A timestamp in a text value: ISO-8601 with `T` or a space, optional fraction, `Z` or an
offset, or a bare date."""
ISO_TIMESTAMP_CONSTANT = (
    r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?"
)
"""A timestamp written as a quoted constant in a predicate (read when it is compiled, so a
typo is refused rather than NULL): seconds and the offset's minutes may be left out."""
