"""Event features kept from one run to the next, so a nightly run reads one day of events.

A run of date D needs every feature of every person over all the events visible at D. Instead
of rescanning the history, each run keeps two tables (README, "Event features are folded"):

- `feature_partials`: for the events of one ingest date and one *bucket*, the state columns
  (`membership.state_columns`) per person, without the window test. Bucket X holds the events
  whose timestamp is in (X 00:00, X+1 00:00] UTC. The as-of instant of run D is 00:00 UTC of
  D+1, so an event is visible at D exactly when its bucket is <= D, inside a window of W
  days exactly when its bucket is > D - W, and at least T days old (`ago => (W, T)`) exactly
  when its bucket is <= D - T: buckets are whole days of every window.
- `feature_totals`: the state columns of every foldable feature at D, one row per person (a
  recompute writes a file per range of people, `_recompute`).

The totals, and the partials a folding run writes, are kept in person order
(`transforms.engines.person_order`); a recompute writes its partials in the order its aggregate
gives (a fold finds any partial's people by binary search, and sorting them all cost a
recompute about as much as writing them).

Run D after run P folds: per window, the partial files that count at D and did not at P are
added, those that counted at P and no longer do are taken away. Integer columns subtract
exactly; an extreme (first, last, min, max) keeps max(P's value, the added ones) unless the
value that left the window was the extreme, and a float sum is recomputed; both from the
partials that count at D, for the people concerned only. A feature is foldable when its window
is whole days (or absent) and its filter does not read the as-of instant; others are
recomputed from the events every run, once for every person (`_from_events`), beside the fold
or the recompute.

A partial's file keeps only what a later fold may read (`_read_later`): the columns of the
features whose window holds its bucket at its run's date or later, of float sums, and, for a
partial of the events the run ingested or of a bucket not counted yet, of the features without
a window; in the rows with a value in one of them. A partial left with nothing is not written.
Only the state of the latest runs is kept (`remove_unneeded_state`): the next run folds the latest
one's, a rerun of the latest date the one before it.

Features P did not keep (a definition added them) are computed from the events by the run that
meets them, beside the fold of the kept ones: `_recompute` of those features alone writes their
partials in files of their own (label `ADDED`) and their totals are joined to the folded ones.
A partial file therefore holds the columns of the features it was written for (`FORMAT` 3), and
a fold reads of each file the columns it holds (`_held`).

Whatever else cannot be trusted (no state from P, state of another `FORMAT`, no feature P kept,
a date re-ingested since, a missing file, ingests out of order) and `--full` make the run
recompute from the events and write the state afresh (`_recompute`: one pass over the events
per range of people, aggregated per ingest date, bucket and person; that aggregate is written
as the partials and summed over each window into the totals, as a fold sums the partials).
Folding and recomputing give the same features (tests compare them over many days, and with
the DuckDB engine's SQL).

The totals a committed run kept are its features at its date: `segments preview` and
`segments plan` read the columns they need from them (`committed_features`) instead of
recomputing every feature from the events.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

import polars as pl

from transforms.engines import person_order
from transforms.engines.membership import (
    COUNT_SUFFIX,
    StateColumn,
    aggregate_state,
    aggregate_tested,
    counted_names,
    event_features,
    finish,
    state_columns,
    tested_events,
)
from transforms.engines.person_order import (
    in_person_order,
    marked_if_in_person_order,
    positions,
)
from transforms.language.polars import CompiledDefinitions, Feature
from transforms.storage import lake
from transforms.storage.records import FeatureState, RunManifest
from transforms.storage.roots import Root

log = logging.getLogger("segments.feature_state")

TOTALS, PARTIALS = lake.STATE_TABLES
BUCKET, INGESTED = "bucket", "__ingested"
PEOPLE_PER_PARTIALS = 1_000_000
"""A recompute aggregates the events per (ingest date, bucket, person) for about this many
people of the snapshot at a time (`_recompute`): at 10M people and 100M events, ranges of
this size hold about 7M partial rows each."""
WRITERS = 3
"""Partial files a recompute prepares and writes at a time."""
SEARCHERS = 2
"""Partial files a fold reads, and finds the people of among the totals, at a time (a binary
search of strings releases the GIL: at 10M people, 137 partial files took 7.2 s one by one)."""
ADDED = "added-"
"""The label of the partial files a run writes for the features new since the previous run."""
FORMAT = 3
"""Version of the state's files: a run folds only state of its own format (2: in person
order, counts as Int32; 3: a partial file holds the columns of the features it was written
for, and a fold reads of each the columns it holds)."""


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def bucket() -> pl.Expr:
    """The first run date that sees an event: the bucket its timestamp falls in."""
    return (pl.col("timestamp") - pl.duration(microseconds=1)).dt.date().alias(BUCKET)


@dataclass(frozen=True)
class Partial:
    ingest_date: date
    bucket: date
    key: str

    def as_row(self) -> tuple[date, date, str]:
        """As `FeatureState.partials` lists it."""
        return self.ingest_date, self.bucket, self.key


@dataclass
class RunFeatures:
    """The features of a run and the state it leaves for the next one."""

    features: list[pl.LazyFrame]
    """A column per feature of the compiled definitions, one row per person with events: the
    folded ones in person order, and the others (`membership.EventFeatures`)."""
    how: str
    """"folded" from the previous run's state, or why it was recomputed from the events."""
    record: FeatureState | None = None
    """What the run's manifest records under `feature_state`; None when it keeps no state."""
    files: dict[str, list[str]] = field(default_factory=dict)
    """Keys of the state files this attempt wrote, per table."""


def run_features(
    root: Root,
    day: date,
    attempt: str,
    compiled: CompiledDefinitions,
    previous: tuple[date, RunManifest] | None,
    full: bool = False,
) -> RunFeatures:
    """The features of run `day`, folded from the previous run's state `(date, manifest)` when
    it can be trusted, else recomputed; writes this attempt's state files."""
    foldable = [f for f in compiled.features.values() if f.foldable]
    others = [f for f in compiled.features.values() if not f.foldable]
    days = [d for d in lake.ingested_days(root) if d <= day]
    events = {d: lake.read_ingest_manifest(root, d).outputs["events"] for d in days}
    if not foldable or not lake.checked_against_earlier(root, days):
        why = "no foldable features" if not foldable else "dates ingested out of order"
        features = event_features(lake.scan_events(root, day), compiled)
        return RunFeatures([features], f"recomputed ({why}); no state kept")
    problem = "--full" if full else _untrusted(root, previous, foldable, events)
    with ThreadPoolExecutor(1) as beside:
        # the features no state holds, from the events beside the fold or the recompute: a fold
        # leaves a core idle between its many small steps, and at 10M people a recompute's peak
        # comes after them (4.7 GB with them beside, 4.8 GB after)
        ahead = beside.submit(_from_events, root, day, compiled, others)
        if problem is None:
            totals_files, partials, how = _folded(root, day, attempt, events, foldable, previous)
        else:
            totals_files, partials = _recompute(
                root, day, attempt, events, foldable, _snapshot_ids(root, day), totals_written=True
            )
            how = f"recomputed ({problem})"
        recomputed = ahead.result()
    own = f"{lake.partition(PARTIALS, day)}/"
    files = {
        TOTALS: totals_files,
        PARTIALS: [p.key for p in partials if p.key.startswith(own)],
    }
    log.info("run %s: features %s", day, how)
    # the files hold consecutive ranges of people, each in person order
    totals = pl.concat([root.scan_parquet(key) for key in totals_files], how="vertical")
    features = [finish(totals, foldable).with_columns(pl.col("person_id").set_sorted())]
    if recomputed is not None:
        features.append(recomputed.lazy())
    record = FeatureState(
        format=FORMAT,
        features=sorted(f.name for f in foldable),
        totals=files[TOTALS],
        partials=[p.as_row() for p in _still_needed(partials, foldable, day)],
        events=events,
    )
    return RunFeatures(features, how, record, files)


def _folded(
    root: Root,
    day: date,
    attempt: str,
    events: dict[date, list[str]],
    foldable: list[Feature],
    previous: tuple[date, RunManifest],
) -> tuple[list[str], list[Partial], str]:
    """(the totals file, the partials, how) of run `day` folded from the `previous` run's
    state, the features it did not keep computed from the events beside."""
    previous_day, manifest = previous
    kept = manifest.feature_state
    known = [f for f in foldable if f.name in kept.features]
    added = [f for f in foldable if f.name not in kept.features]
    partials = [Partial(*row) for row in kept.partials] + [
        p
        for d in events
        if d > previous_day
        for p in _write_partials(root, day, attempt, d, events[d], known)
    ]
    totals = _fold(root, kept.totals, day, previous_day, partials, known)
    how = "folded"
    if added:  # from the events, beside the kept ones: their own partial files
        new_totals, new_partials = _recompute(
            root, day, attempt, events, added, _snapshot_ids(root, day), label=ADDED
        )
        totals = _joined(totals.collect(), pl.concat(new_totals, rechunk=False), foldable)
        partials += new_partials
        how = f"folded, and {len(added)} new feature(s) computed from the events"
    key = lake.data_file(TOTALS, day, attempt)
    root.write_parquet(totals, key, statistics=False)
    # read back as the evaluation streams through them, never whole in memory again
    return [key], partials, how


def _from_events(
    root: Root, day: date, compiled: CompiledDefinitions, features: list[Feature]
) -> pl.DataFrame | None:
    """The `features` no state holds (distinct counts, sequences, windows of hours), computed
    from the events once for everyone: evaluated lazily per range of people, they would read
    the events once per range. None without any."""
    if not features:
        return None
    return event_features(lake.scan_events(root, day), compiled, features).collect(
        engine="streaming"
    )


def committed_features(
    root: Root, day: date, compiled: CompiledDefinitions, record: FeatureState | None
) -> list[pl.LazyFrame] | None:
    """The event features of the compiled definitions at `day`, read from the feature state
    `record` the committed run of `day` kept (its totals are the features at `day`): the
    foldable features it holds from its totals, only their columns, the others recomputed
    from the events. None when it holds none of them or cannot be trusted (another format,
    files missing, events of dates up to `day` ingested again since); the caller then
    recomputes every feature. What `segments preview` and `segments plan` read."""
    if record is None or record.format != FORMAT:
        return None
    kept = [f for f in compiled.features.values() if f.foldable and f.name in record.features]
    names = {f.name for f in kept}
    if not kept:
        return None
    days = [d for d in lake.ingested_days(root) if d <= day]
    events = {d: lake.read_ingest_manifest(root, d).outputs["events"] for d in days}
    if events != record.events or not lake.checked_against_earlier(root, days):
        return None
    if not all(root.exists(key) for key in record.totals):
        return None
    totals = pl.concat([root.scan_parquet(key) for key in record.totals], how="vertical")
    features = [marked_if_in_person_order(finish(totals, kept))]
    others = [f for f in compiled.features.values() if f.name not in names]
    if others:
        features.append(event_features(lake.scan_events(root, day), compiled, others))
    return features


KEPT_RUNS = 2
"""Committed runs whose state is kept: the next run folds the latest's, a rerun of the latest
date the one before it."""


def remove_unneeded_state(root: Root, kept: list[RunManifest]) -> int:
    """Delete the state files no run will fold any more, given the manifests of the runs whose
    state is kept: files written by earlier runs that none of them still lists. Returns how many.
    A rerun of an older date then recomputes its features, as it does whenever its previous
    run's state is missing."""
    if not kept:
        return 0
    oldest = min(manifest.run_date for manifest in kept)
    listed = set()
    for manifest in kept:
        if manifest.feature_state is not None:
            record = manifest.feature_state
            listed.update(record.totals, (key for *_, key in record.partials))
    unneeded: dict[str, list[str]] = {}  # per run partition
    for table in lake.STATE_TABLES:
        for info in root.list_files(table, recursive=True):
            written_by = lake.STATE_WRITTEN_BY.search(info.key)
            if written_by and written_by[2] < oldest and info.key not in listed:
                unneeded.setdefault(written_by[1], []).append(info.key)
    for folder, keys in unneeded.items():
        root.delete(keys)
        if not root.list_files(folder, recursive=True):
            root.delete_folder(folder)
    return sum(len(keys) for keys in unneeded.values())


def _still_needed(partials: list[Partial], features: list[Feature], day: date) -> list[Partial]:
    """The partials a run after `day` may still read (`_read_later`)."""
    return [p for p in partials if _read_later(features, p.bucket, day)]


def _read_later(
    features: list[Feature], bucket: date, day: date, folded: bool = False
) -> list[Feature]:
    """The features whose columns a run after `day` (and run `day` itself when it `folded` the
    partial: one of the events it ingested) may read from a partial of `bucket`. A fold reads a
    feature's columns of the partials that enter or leave its window, and of those inside it
    when it recomputes an extreme that left or a float sum. So a windowed feature's while the
    bucket is inside the window at `day` or later (bucket > day - window); without a window, a
    float sum's always (any change recomputes it from all of them), any other's when the
    partial is new (`folded`) or not counted yet (a bucket after `day`): it never leaves."""
    read = []
    for f in features:
        if f.window_days is not None:
            later = bucket > day - timedelta(days=f.window_days)
        else:
            refold = any(c.fold == "refold" for c in state_columns(f, pl.lit(True)))
            later = folded or refold or bucket > day
        if later:
            read.append(f)
    return read


def _kept_partial(
    columns: pl.DataFrame,
    rows: pl.Series | None,
    features: list[Feature],
    bucket: date,
    day: date,
    folded: bool = False,
    source_of: dict[str, str] | None = None,
) -> pl.DataFrame | None:
    """What the file of a partial of `bucket` written by run `day` keeps: of the rows `rows` of
    `columns` (every row: None), the state columns runs may read (`_read_later`), in the rows
    with a value in one of them; None when that leaves nothing to write. `source_of` names the
    column of `columns` that holds each state column (default: its own): each is gathered
    once, however many state columns it holds."""
    read = _read_later(features, bucket, day, folded)
    if not read:
        return None
    names = [c.name for f in read for c in state_columns(f, pl.lit(True))]
    source_of = source_of or {name: name for name in names}
    part = columns.select("person_id", *dict.fromkeys(source_of[name] for name in names))
    part = part if rows is None else part.gather(rows)
    part = _prune(part.select("person_id", *(pl.col(source_of[n]).alias(n) for n in names)), read)
    return part if part.height else None


def _untrusted(
    root: Root,
    previous: tuple[date, RunManifest] | None,
    foldable: list[Feature],
    events: dict[date, list[str]],
) -> str | None:
    """Why the previous run's state cannot be folded into this run's, or None if it can."""
    if previous is None:
        return "no previous run"
    previous_day, manifest = previous
    record = manifest.feature_state
    if record is None:
        return f"run {previous_day} kept no feature state"
    if record.format != FORMAT:
        return f"run {previous_day}'s feature state has an earlier format"
    if not any(f.name in record.features for f in foldable):
        return f"every feature new since run {previous_day}"
    earlier = {d: keys for d, keys in events.items() if d <= previous_day}
    if earlier != record.events:
        return f"events ingested on or before {previous_day} changed since that run"
    keys = record.totals + [key for *_, key in record.partials]
    if not all(root.exists(key) for key in keys):
        return f"files of run {previous_day}'s feature state are missing"
    return None


def _write_partials(
    root: Root, day: date, attempt: str, ingested: date, keys: list[str], features: list[Feature]
) -> list[Partial]:
    """Partials of the events ingested on `ingested`: per source file, one file per bucket, in
    person order (a fold then finds their people in the totals in one forward sweep)."""
    written = []
    for index, key in enumerate(keys):
        events = root.scan_parquet(key).filter(counted_names(features))
        frame = aggregate_state(
            events.with_columns(bucket()),
            features,
            [BUCKET, "person_id"],
            {f.name: f.event_tests for f in features},
        ).collect(engine="streaming")
        for (day_bucket,), part in sorted(frame.partition_by(BUCKET, as_dict=True).items()):
            kept = _kept_partial(part, None, features, day_bucket, day, folded=True)
            if kept is None:
                continue
            target = lake.partial_file(day, ingested, day_bucket, attempt, index)
            root.write_parquet(kept.sort("person_id"), target, statistics=False)
            written.append(Partial(ingested, day_bucket, target))
    return written


def _recompute(
    root: Root,
    day: date,
    attempt: str,
    events: dict[date, list[str]],
    features: list[Feature],
    people: pl.Series,
    label: str = "",
    totals_written: bool = False,
) -> tuple[list[pl.DataFrame] | list[str], list[Partial]]:
    """The totals and the partials of every ingest date from the events, in one pass over
    them: per range of person ids (`person_order.person_ranges`, `PEOPLE_PER_PARTIALS` of the
    snapshot each), the events are aggregated per (ingest date, bucket, person), without the
    windows, in bands of buckets (`_bands`: each only the columns some window holding its
    buckets reads); that aggregate is written as the partials (unsorted), and the totals are
    aggregated from it, each feature over the buckets of its window (as a fold counts them).

    The totals of each range, in person order, in range order: frames, or with `totals_written`
    the keys of the files they are written to, one per range (all of them in memory at once
    were the peak of a recompute of 10M people)."""
    tests = {f.name: f.event_tests for f in features}

    def same_as(f: Feature) -> tuple:
        return f.aggregate, f.column, f.column_type, *(text for text, _ in tests[f.name])

    same_partials = {}  # features whose partials are the same columns (windows apart): once
    for f in features:
        same_partials.setdefault(same_as(f), f)
    source_of = {  # each state column: the column of the aggregate that holds it
        own.name: kept.name
        for f in features
        for kept, own in zip(
            state_columns(same_partials[same_as(f)], pl.lit(True)),
            state_columns(f, pl.lit(True)),
            strict=True,
        )
    }
    longest = {}  # each aggregated feature: the longest window of the features it holds
    for f in features:
        kept = same_partials[same_as(f)]
        longest[kept.name] = max(longest.get(kept.name, 0), f.window_days or _NO_WINDOW)
    bands, beyond = _bands(day, list(same_partials.values()), longest)
    band_of = pl.sum_horizontal(
        [pl.lit(0, dtype=pl.UInt8)] + [pl.col(BUCKET) <= newest for newest, _ in bands[1:]]
    )
    counted = counted_names(features)
    if beyond is not None:
        counted &= bucket() > beyond
    by = [INGESTED, BUCKET, "person_id"]
    totals, written = [], []
    for index, in_range in enumerate(_ranges(people)):
        scans = [
            root.scan_parquet(key)
            .filter(in_range & counted)
            .with_columns(pl.lit(ingested).alias(INGESTED))
            for ingested, keys in sorted(events.items())
            for key in keys
        ]
        tested, test_columns = tested_events(
            pl.concat(scans, how="vertical_relaxed").with_columns(bucket()),
            list(same_partials.values()),
            by,
            tests,
        )
        tested = tested.with_columns(band_of.alias(_BAND)).collect(engine="streaming")
        partials = [
            aggregate_tested(
                tested.lazy().filter(pl.col(_BAND) == number), test_columns, held, by, tests
            ).collect()
            for number, (_, held) in enumerate(bands)
        ]
        del tested
        in_range_totals = in_person_order(
            _prune(_totals_of(partials, day, features, source_of), features)
        )
        if totals_written:
            key = lake.data_part(TOTALS, day, attempt, index)
            root.write_parquet(in_range_totals, key, statistics=False)
            totals.append(key)
        else:
            totals.append(in_range_totals)
        written += _write_recomputed(
            root, day, attempt, index, partials, features, source_of, label
        )
        del partials, in_range_totals
    return totals, written


_BAND = "__band"
_NO_WINDOW = 1 << 30
"""A window longer than any (days) for the features without one."""


def _bands(
    day: date, aggregated: list[Feature], longest: dict[str, int]
) -> tuple[list[tuple[date | None, list[Feature]]], date | None]:
    """The bands of buckets a recompute aggregates apart, each (its newest bucket, None for
    the first; the features to aggregate in it): those whose longest window (`longest`, by
    name) holds its buckets. A window of W days holds the buckets after `day` - W, so the
    bands end there. Then the newest bucket no window holds (None if a feature without a
    window holds them all): older events are not aggregated. At 1M people, the benchmark's
    windows of 1 to 90 days aggregated 45% of the columns an aggregate of every bucket did, in
    1.6-1.9 s instead of 2.7-3.3 s."""
    ends = sorted({longest[f.name] for f in aggregated})
    bands = [
        (
            None if i == 0 else day - timedelta(days=ends[i - 1]),
            [f for f in aggregated if longest[f.name] >= days],
        )
        for i, days in enumerate(ends)
    ]
    beyond = None if ends[-1] == _NO_WINDOW else day - timedelta(days=ends[-1])
    return bands, beyond


def _write_recomputed(
    root: Root,
    day: date,
    attempt: str,
    index: int,
    partials: list[pl.DataFrame],
    features: list[Feature],
    source_of: dict[str, str],
    label: str,
) -> list[Partial]:
    """The partial files, named with `label`, of a recompute's aggregates of range `index`
    (`_recompute`, one per band): one per (ingest date, bucket), in that order. Each gathers
    its rows on its own (a partition of all at once copies the aggregate); `WRITERS` are
    prepared and written at a time, as gathering and encoding release the GIL (at 1M people on
    2 cores the files took 1.6 s instead of 2.5 s)."""
    found = []  # (aggregate, its rows of the partial, ingest date, bucket)
    for partial in partials:
        rows = (
            partial.select(INGESTED, BUCKET)
            .with_row_index("__rows")
            .group_by(INGESTED, BUCKET)
            .agg("__rows")
        )
        found += zip(
            itertools.repeat(partial), rows["__rows"], rows[INGESTED], rows[BUCKET], strict=False
        )
    found.sort(key=lambda row: (row[2], row[3]))

    def write(partial: pl.DataFrame, rows: pl.Series, ingested: date, day_bucket: date):
        kept = _kept_partial(partial, rows, features, day_bucket, day, source_of=source_of)
        if kept is None:
            return None
        target = lake.partial_file(day, ingested, day_bucket, attempt, index, label)
        root.write_parquet(kept, target, statistics=False)
        return Partial(ingested, day_bucket, target)

    with ThreadPoolExecutor(WRITERS) as writers:
        done = list(writers.map(lambda row: write(*row), found))
    return [p for p in done if p is not None]


def _snapshot_ids(root: Root, day: date) -> pl.Series:
    """The person ids of the people snapshot of `day` (what a recompute's ranges split)."""
    return lake.scan_people(root, day).select("person_id").collect().to_series()


def _joined(totals: pl.DataFrame, added: pl.DataFrame, features: list[Feature]) -> pl.DataFrame:
    """The totals of some features (`totals`) and of the others (`added`) in one frame, in
    person order: a person in one only has the other's sums 0 and extremes NULL, as a totals
    row of a person without such events has."""
    sums = [
        c.name
        for f in features
        for c in state_columns(f, pl.lit(True))
        if c.fold not in ("max", "min")
    ]
    joined = totals.join(added, on="person_id", how="full", coalesce=True)
    return in_person_order(joined.with_columns(pl.col(sums).fill_null(0)))


def _ranges(people: pl.Series) -> list[pl.Expr]:
    """Filters that split every person_id (NULL with the first) into consecutive ranges of
    about `PEOPLE_PER_PARTIALS` of the snapshot's `people` (or `person_order.PEOPLE_PER_RANGE`
    if fewer), as `person_order.person_ranges` does."""
    ids = people.drop_nulls()
    ids = ids if ids.is_sorted() else ids.sort()
    size = min(PEOPLE_PER_PARTIALS, person_order.PEOPLE_PER_RANGE)
    count = max(1, -(-ids.len() // size))
    if count == 1:
        return [pl.lit(True)]
    bounds = [ids[ids.len() * i // count] for i in range(1, count)]
    person = pl.col("person_id")
    middle = [(person >= low) & (person < high) for low, high in itertools.pairwise(bounds)]
    return [person.is_null() | (person < bounds[0]), *middle, person >= bounds[-1]]


def _totals_of(
    partials: list[pl.DataFrame], day: date, features: list[Feature], source_of: dict[str, str]
) -> pl.DataFrame:
    """Run `day`'s totals from the partial aggregates of every (ingest date, bucket), in which
    state column `c` is the column `source_of[c]` (where the aggregate holds it: a band of
    buckets no window of the feature holds does not): each feature over the buckets that count
    at `day` (`_counts`)."""
    types = {name: dtype for partial in partials for name, dtype in partial.schema.items()}
    bucket_of = pl.col(BUCKET)
    counts = {}
    for f in features:
        counts[f.name] = bucket_of <= day - timedelta(days=f.window_end_days or 0)
        if f.window_days is not None:
            counts[f.name] &= bucket_of > day - timedelta(days=f.window_days)

    def inside(partial: pl.DataFrame) -> pl.LazyFrame:
        held = []
        for f in features:
            for c in state_columns(f, pl.lit(True)):
                source = source_of[c.name]
                value = (
                    pl.when(counts[f.name]).then(pl.col(source))
                    if source in partial.schema
                    else pl.lit(None, dtype=types[source])
                )
                held.append(value.alias(c.name))
        return partial.lazy().filter(bucket_of <= day).select("person_id", *held)

    aggregates = [
        getattr(pl.col(c.name), c.aggregate)()
        for f in features
        for c in state_columns(f, pl.lit(True))
    ]
    schema = {"person_id": pl.String, **{c: types[k] for c, k in source_of.items()}}
    return (
        pl.concat([inside(partial) for partial in partials], how="vertical")
        .group_by("person_id")
        .agg(aggregates)
        .cast(schema)
        .collect(engine="streaming")
    )


def _counts(partial: Partial, day: date, feature: Feature, upto: date) -> bool:
    """Whether a partial counts for `feature` at run `day`, known as of ingest date `upto`:
    its bucket is inside the window, (day - start, day - end] in days."""
    end = day - timedelta(days=feature.window_end_days or 0)
    if partial.ingest_date > upto or partial.bucket > end:
        return False
    window = feature.window_days
    return window is None or partial.bucket > day - timedelta(days=window)


def _rows_of(
    root: Root, partials: list[Partial], columns_of: dict[str, list[str]], people: pl.Series
) -> list[pl.LazyFrame]:
    """`people`'s rows of each partial file, with those of its columns `columns_of[key]` it
    holds renamed `<name>__again`."""
    rows = []
    for p in partials:
        if not columns_of.get(p.key):
            continue
        scan = root.scan_parquet(p.key)
        names = _held(scan, columns_of[p.key])
        if names:
            again = (pl.col(c).alias(f"{c}__again") for c in names)
            rows.append(
                scan.select("person_id", *again).filter(pl.col("person_id").is_in(people.implode()))
            )
    return rows


def _held(scan: pl.LazyFrame, names: list[str]) -> list[str]:
    """Those of `names` a partial file holds: the columns of the features it was written for
    (`FORMAT` 3), the others are in files of their own."""
    schema = scan.collect_schema()
    return [name for name in names if name in schema]


def _per_person(scans: list[pl.LazyFrame], outputs: dict[str, tuple[str, pl.DataType]]):
    """The rows of `scans` aggregated per person: each output column (aggregate, type) over
    the rows that have it, NULL (or 0 for sums) for a person none of whose rows does."""
    present = {name for scan in scans for name in scan.collect_schema().names()}
    rows = pl.concat(scans, how="diagonal_relaxed")
    return rows.group_by("person_id").agg(
        getattr(pl.col(name), aggregate)()
        if name in present
        else pl.lit(None, dtype=dtype).alias(name)
        for name, (aggregate, dtype) in outputs.items()
    )


def _fold(
    root: Root,
    previous_totals: list[str],
    day: date,
    previous_day: date,
    partials: list[Partial],
    features: list[Feature],
) -> pl.LazyFrame:
    """Run `day`'s totals from run `previous_day`'s and the partials that changed between, in
    person order: each changed partial updates the rows of its people in place (found by
    binary search; people new in the added partials get rows of their own, merged in as the
    totals are written): integer columns take the partials that left away and add the new
    ones; extremes keep the larger (smaller) of their value and the added ones, unless a value
    that left was the extreme; float sums note whether anything moved. What is stale is then
    recomputed for the people concerned. (Merging the new people in first copied every
    column, and searched the partials' people twice: at 1M people the fold took 1.46 s, now
    1.21 s, medians of 10; at 10M people with 11k new, reading the totals and applying the
    partials took 5.8-6.3 s, now 3.9-4.3 s, of which merging while writing gives back 0.7 s.)"""
    columns = {f.name: state_columns(f, pl.lit(True)) for f in features}
    spec = {c.name: c for cs in columns.values() for c in cs}
    companion = {c.name: f"{f.name}{COUNT_SUFFIX}" for f in features for c in columns[f.name]}
    added: dict[str, list[str]] = {}
    taken: dict[str, list[str]] = {}
    counting: dict[str, list[str]] = {}
    for p in partials:
        for f in features:
            now = _counts(p, day, f, day)
            before = _counts(p, previous_day, f, previous_day)
            names = [c.name for c in columns[f.name]]
            if now and not before:
                added.setdefault(p.key, []).extend(names)
            if before and not now:
                taken.setdefault(p.key, []).extend(names)
            if now:
                counting.setdefault(p.key, []).extend(names)

    def read(key: str, names: list[str]) -> pl.DataFrame:
        """The partial file `key`'s columns `names` it holds, in person order (a recompute
        writes its partials in any order; its people are then found by binary search, many
        times faster for people in order: at 10M people, sorting the 42 partials that
        changed and searching took 1.4 s, searching them unsorted 3.5 s)."""
        scan = root.scan_parquet(key)
        return in_person_order(scan.select("person_id", *_held(scan, names)).collect())

    with ThreadPoolExecutor(SEARCHERS) as pool:
        arriving = dict(zip(added, pool.map(read, added, added.values()), strict=True))
        leaving = dict(zip(taken, pool.map(read, taken, taken.values()), strict=True))
    # only a sum of signed integers can leave something for a person without a row (+5 and
    # -5 were pruned as 0); other people without a row leave 0 or NULL
    signed = {f.name for f in features if f.aggregate == "sum" and spec[f.name].fold == "add"}
    ids, *held = _previous_totals(root, previous_totals, spec)
    old_rows = _Rows(ids, {column.name: column for column in held})
    # every removal before any addition: an extreme that left is compared with the previous
    # value; each frame's people are searched for among the totals once, `SEARCHERS` frames at
    # a time, and the rows of those the totals lack are kept for the rows of their own
    changes = [(frame, -1) for frame in leaving.values()]
    changes += [(frame, 1) for frame in arriving.values()]
    lacking: list[tuple[pl.DataFrame, int]] = []
    with ThreadPoolExecutor(SEARCHERS) as pool:
        for start in range(0, len(changes), 2 * SEARCHERS):
            batch = changes[start : start + 2 * SEARCHERS]
            people = (frame["person_id"] for frame, _ in batch)
            found = pool.map(positions, itertools.repeat(ids), people)
            for (frame, sign), (where, inside) in zip(batch, found, strict=True):
                old_rows.apply(frame.filter(inside), where.filter(inside), sign, spec, companion)
                if not inside.all():
                    lacking.append((frame.filter(~inside), sign))
    # people new to the totals: those of the added partials (and of signed sums that left)
    new = pl.concat(
        [ids.clear()]
        + [frame["person_id"] for frame, sign in lacking if sign > 0 or signed & set(frame.columns)]
    )
    new = new.unique().sort()
    new_rows = _Rows(
        new,
        {
            name: pl.repeat(None if c.fold in ("max", "min") else 0, new.len(), eager=True)
            .cast(old_rows.values[name].dtype)
            .alias(name)
            for name, c in spec.items()
        },
    )
    for frame, sign in lacking:
        where, inside = positions(new, frame["person_id"])
        new_rows.apply(frame.filter(inside), where.filter(inside), sign, spec, companion)
    parts = (old_rows, new_rows)
    stale = {name for part in parts for name in part.stale}
    if stale:
        redo = {key: [c for c in cols if c in stale] for key, cols in counting.items()}
        again = _per_person(
            _rows_of(root, partials, redo, pl.concat([part.stale_people() for part in parts]))
            or [pl.LazyFrame(schema={"person_id": pl.String})],
            {f"{c}__again": (spec[c].aggregate, old_rows.values[c].dtype) for c in stale},
        ).collect()
        for part in parts:
            part.recompute(again, spec)
    # the people new to the totals merged in as the totals are written
    old, added = (pl.DataFrame([part.ids, *part.values.values()]).lazy() for part in parts)
    return _prune(old.merge_sorted(added, key="person_id"), features)


@dataclass
class _Rows:
    """Rows of totals a fold updates (`_fold`): their people in person order, and a column per
    state column, each its own owner so that `scatter` updates it in place."""

    ids: pl.Series
    values: dict[str, pl.Series]
    stale: dict[str, list[pl.Series]] = field(default_factory=dict)
    """The rows whose value of a state column is to be recomputed from the partials."""

    def apply(
        self,
        frame: pl.DataFrame,
        where: pl.Series,
        sign: int,
        spec: dict[str, StateColumn],
        companion: dict[str, str],
    ) -> None:
        """Add (`sign` 1) or take away (-1) the partial `frame`, whose rows are at `where`:
        integer sums move; an extreme that left (its value was the extreme) and a float sum
        with a value that moved are stale; an added extreme keeps the larger (smaller)."""
        for name in frame.columns[1:]:
            column, fold, change = self.values[name], spec[name].fold, frame[name]
            if fold == "add":
                self.values[name] = column.scatter(where, column.gather(where) + sign * change)
            elif fold == "refold":
                self.stale.setdefault(name, []).append(where.filter(frame[companion[name]] > 0))
            elif sign < 0:
                left = change.is_not_null() & (change == column.gather(where))
                self.stale.setdefault(name, []).append(where.filter(left.fill_null(False)))
            else:
                extreme = pl.max_horizontal if fold == "max" else pl.min_horizontal
                kept = pl.select(extreme(column.gather(where), change)).to_series()
                self.values[name] = column.scatter(where, kept)

    def stale_people(self) -> pl.Series:
        """The people with a stale value."""
        rows = pl.concat([pl.Series([], dtype=pl.UInt32), *itertools.chain(*self.stale.values())])
        return self.ids.gather(rows.unique())

    def recompute(self, again: pl.DataFrame, spec: dict[str, StateColumn]) -> None:
        """Set the stale values to those recomputed (`again`: a column `<name>__again` per
        state column, one row per person with any)."""
        if not self.stale:
            return
        where, inside = positions(self.ids, again["person_id"])
        mine = again.filter(inside).with_columns(row=where.filter(inside))
        for name, found in self.stale.items():
            rows = pl.concat(found).unique()
            recomputed = (
                rows.alias("row")
                .to_frame()
                .join(mine, on="row", how="left", maintain_order="left")[f"{name}__again"]
            )
            if spec[name].fold == "refold":
                recomputed = recomputed.fill_null(0.0)
            self.values[name] = self.values[name].scatter(rows, recomputed)


def _previous_totals(root: Root, keys: list[str], spec: dict[str, StateColumn]) -> list[pl.Series]:
    """The columns of the previous totals (files `keys`: one, or the files of a recompute's
    consecutive ranges of people) in person order, each its own owner."""
    totals = pl.concat([root.scan_parquet(key).select("person_id", *spec) for key in keys])
    totals = in_person_order(totals.collect())
    return totals.rechunk().get_columns()


def _prune(totals: Frame, features: list[Feature]) -> Frame:
    """Drop people whose every state column says "no events": they read as the defaults."""
    columns = [c for f in features for c in state_columns(f, pl.lit(True))]
    kept = [pl.col(c.name) != 0 for c in columns if c.fold == "add"]
    kept += [pl.col(c.name).is_not_null() for c in columns if c.fold in ("max", "min")]
    return totals.filter(pl.any_horizontal(kept).fill_null(True)) if kept else totals
