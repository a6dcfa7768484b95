"""What days_in_segment reads: the member_since of the previous committed run.

`days_in_segment('id')` of a member of `id` in run D is the whole days from the member_since
the latest committed run before D gave them (D itself when they were not a member there, or
there is none) to D. Only that committed run is read, so a rerun or a backfill of D gives the
same values as the run of D did.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms.language.checked import CheckedDefinitions
from transforms.language.types import tenures
from transforms.storage.catalog import manifest_before, members_before, read_catalog
from transforms.storage.roots import Root

PREVIOUS = {"segment_id": pl.String, "person_id": pl.String, "member_since": pl.Date}


def tenure_segments(compiled: CheckedDefinitions) -> list[str]:
    """The segments whose days_in_segment some predicate reads."""
    return tenures([segment.predicate for segment in compiled.segments.values()])


def previous_members(root: Root, day: date, compiled: CheckedDefinitions) -> pl.DataFrame | None:
    """(segment_id, person_id, member_since) of the segments days_in_segment reads, in the
    latest committed run before `day` (no rows when there is none); None when no predicate
    reads days_in_segment."""
    ids = tenure_segments(compiled)
    if not ids:
        return None
    return members_before(root, read_catalog(root), day, ids, PREVIOUS)


def previous_files(root: Root, day: date) -> list[str]:
    """The membership files of the latest committed run before `day` ([] when there is none),
    for an engine that reads them itself."""
    manifest = manifest_before(root, read_catalog(root), day)
    return manifest.files["membership"] if manifest else []
