"""What the committed runs say over time, read from their manifests only (`segments history`,
the run report's charts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from transforms.storage.catalog import read_catalog, read_manifest
from transforms.storage.records import RunManifest
from transforms.storage.roots import Root


@dataclass
class SegmentRun:
    """One segment in one committed run."""

    run_date: str
    size: int
    entered: int
    exited: int
    definition: str | None
    """The content hash of the definition the run used (None: not defined in that run)."""


def manifests(lake: Root, until: date | None = None, last: int | None = None) -> list[RunManifest]:
    """The manifests of the committed runs, oldest first: of runs up to `until` if given, and
    only the `last` ones of those if given (the others are not read)."""
    catalog = read_catalog(lake)
    dates = [d for d in catalog.dates if until is None or d <= until]
    return [read_manifest(lake, catalog, day) for day in (dates[-last:] if last else dates)]


def segment_history(lake: Root, segment_id: str) -> list[SegmentRun]:
    """Size, entered and exited of a segment in every committed run that had it, oldest first
    (the run that deleted it is the last: it records the exits)."""
    rows = []
    for manifest in manifests(lake):
        counts = manifest.segments.get(segment_id)
        if counts is None:
            continue
        rows.append(
            SegmentRun(
                manifest.run_date,
                counts.size,
                counts.entered,
                counts.exited,
                manifest.definitions.get(segment_id),
            )
        )
    return rows
