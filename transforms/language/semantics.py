"""What the segment language means, apart from any engine: its types, units, casts, time and
event windows (docs/segment_language.md).

The check pass (`transforms.language.check`) and every back end (`transforms.language.polars`,
`transforms.language.sql`) read these rules from here, and the engines read the window rules
(`earliest_needed`), so no rule is written twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlglot import exp

DIALECT = "duckdb"
"""The dialect predicates are parsed in and canonical text is written in."""
NUMERIC = ("integer", "number")
TEMPORAL = ("date", "timestamp")
FEATURE_PREFIX, SEGMENT_PREFIX, SINCE_PREFIX = "__f_", "__seg_", "__since_"
"""Column names of event features, of segment memberships and of the member_since of the
previous committed run (days_in_segment) next to the people columns."""
INTERVAL_UNITS = {
    "SECOND": timedelta(seconds=1),
    "MINUTE": timedelta(minutes=1),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
    "WEEK": timedelta(weeks=1),
}
TRUNC_UNITS = {
    "SECOND": "1s",
    "MINUTE": "1m",
    "HOUR": "1h",
    "DAY": "1d",
    "WEEK": "1w",
    "MONTH": "1mo",
    "QUARTER": "1q",
    "YEAR": "1y",
}
"""date_trunc units, each with its length as Polars writes it."""
DIFF_UNIT_SECONDS = {"DAY": 86400, "HOUR": 3600, "MINUTE": 60, "SECOND": 1}
"""date_diff units of a fixed length; YEAR and MONTH count calendar boundaries."""
CAST_TYPES = {
    exp.DataType.Type.TEXT: "string",
    exp.DataType.Type.VARCHAR: "string",
    exp.DataType.Type.INT: "integer",
    exp.DataType.Type.BIGINT: "integer",
    exp.DataType.Type.DOUBLE: "number",
    exp.DataType.Type.BOOLEAN: "boolean",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPNTZ: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamp",
}
INT32 = (-(2**31), 2**31 - 1)
"""The range of CAST(... AS INTEGER): NULL outside it."""
# casts that never convert a value (TRY_CAST gives NULL on every engine)
NEVER_CONVERTS = {
    ("date", "boolean"),
    ("timestamp", "boolean"),
    ("date", "integer"),
    ("timestamp", "integer"),
    ("date", "number"),
    ("timestamp", "number"),
    ("boolean", "date"),
    ("boolean", "timestamp"),
    ("integer", "date"),
    ("integer", "timestamp"),
    ("number", "date"),
    ("number", "timestamp"),
}
AGGREGATES = {
    "event_count": ("count", False),
    "event_count_distinct": ("count_distinct", True),
    "performed": ("count", False),
    "first_event_at": ("first", False),
    "last_event_at": ("last", False),
    "event_sum": ("sum", True),
    "event_min": ("min", True),
    "event_max": ("max", True),
    "event_avg": ("avg", True),
    "performed_in_order": ("in_order", False),
}
"""Event functions: the aggregate each computes, and whether it takes an event column."""
KEYWORDS = ("within", "ago", "since", "until", "where")
"""The named arguments of the event functions."""
SEQUENCE_KEYWORDS = (*KEYWORDS, "gap")
"""The named arguments of performed_in_order."""
SEQUENCE_STEPS = (2, 5)
"""How many steps performed_in_order takes."""
REGULARLY_KEYWORDS = ("every", "periods", "at_least", "times", "where")
"""The named arguments of performed_regularly."""
REGULARLY_PERIODS = (1, 100)
"""How many periods performed_regularly may count (each is an event count of its own)."""
AS_OF_FUNCTIONS = ("as_of", "now", "days_since")
BUCKETS = (2, 1_000_000)
"""The range of n in bucket(n[, 'salt'])."""
HEX_DIGITS = 8
"""bucket() reads this many hexadecimal digits of the md5 of salt || ':' || person_id."""


def bucket_of(person_id: str, n: int, salt: str = "") -> int:
    """bucket(n, salt) of a person: the first 8 hexadecimal digits of
    md5(salt || ':' || person_id) (of its UTF-8 bytes) as an integer, modulo n. (The Polars
    engine computes a column of them with DuckDB's md5: `transforms.language.polars`.)"""
    digest = hashlib.md5(f"{salt}:{person_id}".encode()).hexdigest()
    return int(digest[:HEX_DIGITS], 16) % n


def run_date(as_of: datetime) -> date:
    """The run date D whose as-of instant is `as_of`."""
    return (as_of - timedelta(days=1)).date()


def as_of_instant(day: date) -> datetime:
    """The as-of instant of run date D: the end of D, 00:00 UTC of D+1."""
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def reads_as_of(node: exp.Expr) -> bool:
    """Whether an expression's value depends on the run's as-of instant."""
    return any(
        isinstance(n, (exp.CurrentTimestamp, exp.CurrentDate))
        or (isinstance(n, exp.Anonymous) and n.name.lower() in AS_OF_FUNCTIONS)
        for n in node.walk()
    )


def interval_text(delta: timedelta) -> str:
    """An interval as the language writes it: '30 days', '12 hours'."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class EventAggregate:
    """One distinct event-function call: an aggregate of a person's events, shared by every
    segment that makes the same call."""

    name: str
    aggregate: str  # count | count_distinct | sum | min | max | avg | first | last | in_order
    event: str  # an event name, or '*' for any
    column: str | None
    within: timedelta | None
    since: datetime | None
    until: datetime | None
    filter: exp.Expr | None
    type: str
    column_type: str | None = field(default=None, compare=False, repr=False)
    """The type of the aggregated event column (integer or number), if any."""
    window_start: datetime | None = field(default=None, compare=False, repr=False)
    """The run's as-of instant minus `within` (or the first bound of `ago`): events must be
    later than this."""
    ago: tuple[timedelta, timedelta] | None = None
    """A relative window (`ago => ('90 days', '30 days')`): events with
    as_of - ago[0] < timestamp <= as_of - ago[1]."""
    window_end: datetime | None = field(default=None, compare=False, repr=False)
    """The run's as-of instant minus the second bound of `ago`: events must be no later."""
    steps: tuple[str, ...] | None = None
    """performed_in_order: the event names of the steps, in order (`event` is the first)."""
    gap: timedelta | None = None
    """performed_in_order: the longest time between two consecutive steps; None: no limit."""

    @property
    def event_names(self) -> tuple[str, ...]:
        """The event names the feature reads ('*' for any)."""
        return self.steps if self.steps is not None else (self.event,)

    @property
    def lookback(self) -> timedelta | None:
        """How far before the as-of instant the window starts, or None without a window."""
        return self.ago[0] if self.ago is not None else self.within

    @property
    def window_days(self) -> int | None:
        """The window's start in whole days before the as-of instant, or None without a window
        (or one of hours or minutes)."""
        if self.lookback is None or self.lookback % timedelta(days=1):
            return None
        return self.lookback.days

    @property
    def window_end_days(self) -> int | None:
        """The window's end in whole days before the as-of instant (0 without `ago`), or None
        when it is not whole days."""
        end = self.ago[1] if self.ago is not None else timedelta(0)
        return None if end % timedelta(days=1) else end.days

    @property
    def foldable(self) -> bool:
        """Whether per-day partial aggregates give this feature exactly: no window or one whose
        bounds are whole days, and a filter that does not read the as-of instant. Distinct
        counts never are: the values of one day cannot be told apart from another's once
        counted."""
        if self.aggregate in ("count_distinct", "in_order"):
            return False
        whole_days = (
            self.lookback is None or self.window_days is not None
        ) and self.window_end_days is not None
        return whole_days and (self.filter is None or not reads_as_of(self.filter))

    @property
    def default(self) -> int | bool | None:
        """Value for a person without matching events: 0 for counts and sums, FALSE for
        sequences, else NULL."""
        if self.aggregate == "in_order":
            return False
        return 0 if self.aggregate in ("count", "count_distinct", "sum") else None

    def describe(self) -> str:
        args = [repr(step) for step in self.event_names] + ([self.column] if self.column else [])
        if self.gap:
            args.append(f"gap => '{interval_text(self.gap)}'")
        if self.within:
            args.append(f"within => '{interval_text(self.within)}'")
        if self.ago:
            start, end = (interval_text(bound) for bound in self.ago)
            args.append(f"ago => ('{start}', '{end}')")
        if self.since:
            args.append(f"since => TIMESTAMP '{self.since:%Y-%m-%d %H:%M:%S}'")
        if self.until:
            args.append(f"until => TIMESTAMP '{self.until:%Y-%m-%d %H:%M:%S}'")
        if self.filter is not None:
            args.append(f"where => {self.filter.sql(dialect=DIALECT)}")
        return f"{self.aggregate}({', '.join(args)})"


def earliest_needed(features: Iterable[EventAggregate], as_of: datetime) -> datetime | None:
    """The oldest event timestamp any feature can count, or None if some feature needs all."""
    starts = []
    for feature in features:
        bounds = [
            b
            for b in (feature.since, as_of - feature.lookback if feature.lookback else None)
            if b is not None
        ]
        if not bounds:
            return None
        starts.append(max(bounds))
    return min(starts) if starts else None
