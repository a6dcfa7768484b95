"""The staging folder of an attempt: typed records and frames in, the same out."""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms.runs.staging import StagedFrame, Staging
from transforms.storage.records import IngestStepResult, ValidateStepResult
from transforms.storage.roots import Root


def test_a_step_result_and_a_frame_read_back_as_staged(tmp_path):
    staging = Staging(Root(str(tmp_path)), date(2026, 3, 30), "20261201T014932320369-b82b8b")
    assert staging.find(IngestStepResult) is None
    staged = IngestStepResult(ingested=True, why="not ingested yet", rows_read={"people": 3})
    staging.write(staged)
    assert staging.read(IngestStepResult) == staged
    assert staging.find(ValidateStepResult) is None
    assert (tmp_path / staging.folder / "ingest_step.json").is_file()
    frame = pl.DataFrame({"segment_id": ["vip"], "person_id": ["a"]})
    staging.write_frame(StagedFrame.MEMBERS, frame)
    assert staging.read_frame(StagedFrame.MEMBERS).equals(frame)
    assert staged.summary() == {
        "ingested": True,
        "why": "not ingested yet",
        "rows_read": {"people": 3},
    }
    assert IngestStepResult(ingested=False).summary() == {"ingested": False}
