"""What a committed run did (`RunReport`), read from its manifest."""

from __future__ import annotations

import logging
from datetime import date

from pydantic import Field

from transforms.config import Settings
from transforms.errors import MissingInputError
from transforms.logs import RESULT
from transforms.storage import lake
from transforms.storage.catalog import read_catalog, read_manifest
from transforms.storage.records import IngestReport, ManualUploads, Part, SegmentCounts
from transforms.storage.roots import Root

log = logging.getLogger("segments.run")


class RunReport(Part):
    """What a committed run did; the same figures are in its manifest."""

    date: str
    previous_run_date: str | None
    people: int
    segments: dict[str, SegmentCounts]
    manifest: str
    """Key of the run's manifest in the lake."""
    ingested: IngestReport | None = None
    """The ingest report when this run ingested its date, else None."""
    manual: ManualUploads = Field(default_factory=ManualUploads)
    """The uploads applied and refused (as in the manifest)."""
    seconds: dict[str, float] = Field(default_factory=dict)
    html: str | None = None
    """URL of the run's HTML report, once written (`transforms.insights.report.html_report`)."""
    features: str = "recomputed"
    """How the event features were computed: "folded" from the previous run's state, or why
    they were recomputed from the events."""
    ingest_reason: str | None = None
    """Why this run read D's landing files (not ingested yet, changed since, asked for)."""
    landing_unread: list[str] = Field(default_factory=list)
    """Landing files of D that changed after this run read them: the next run of D reads them."""
    rebuilt: list[str] = Field(default_factory=list)
    """The later runs rerun after this one (`--rebuild-later`), in order."""

    def to_json(self) -> dict[str, object]:
        """As `segments run --json` prints it."""
        data = self.model_dump(mode="json")
        data["ingested"] = self.ingested.to_json() if self.ingested else None
        return data


def report(settings: Settings, day: date) -> RunReport:
    """What the committed run of `day` did, from its manifest."""
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    manifest = read_manifest(root, catalog, day)
    if manifest is None:
        raise MissingInputError(
            f"run {day} has not committed in {root.url}", hint=f"run `segments run --date {day}`"
        )
    result = RunReport(
        date=day.isoformat(),
        previous_run_date=manifest.previous_run_date,
        people=manifest.people,
        segments=manifest.segments,
        manifest=catalog.runs[day.isoformat()],
        ingested=lake.read_ingest_manifest(root, day) if manifest.ingested_by_run else None,
        manual=manifest.manual,
        seconds=manifest.seconds,
        features=manifest.features,
        ingest_reason=manifest.ingest_reason,
        landing_unread=manifest.landing_unread,
    )
    for sid, counts in result.segments.items():
        log.info(
            "run %s %s: %d members, %d entered, %d exited",
            day,
            sid,
            counts.size,
            counts.entered,
            counts.exited,
            extra=RESULT,
        )
    return result
