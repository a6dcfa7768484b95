"""Shared fixtures: a throwaway workspace (landing, lake, inbox) on local folders, real files."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from transforms.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "data_contracts"
DAY = date(2026, 3, 30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        None,
        landing=str(tmp_path / "landing"),
        lake=str(tmp_path / "lake"),
        inbox=str(tmp_path / "inbox"),
        contracts=str(CONTRACTS),
        definitions=str(REPO / "segment_definitions"),
    )


def land(settings: Settings, table: str, name: str, content: bytes | str, day: date = DAY) -> Path:
    """Write one landing file `landing/<table>/<day>/<name>` (gzip when the name ends in .gz)."""
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path = Path(settings.landing) / table / day.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def lake_table(settings: Settings, folder: str) -> pl.DataFrame:
    """Every Parquet file under `lake/<folder>` read as one frame (empty frame if none)."""
    files = sorted((Path(settings.lake) / folder).glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def lake_files(settings: Settings) -> dict[str, bytes]:
    """Every file under the lake root, by relative path, with its bytes."""
    root = Path(settings.lake)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# The typed rows of the two well-formed people of the ingest tests' CSV (00123, 00124).
EXPECTED_PEOPLE = pl.DataFrame(
    {
        "person_id": ["00123", "00124"],
        "email": ["ada@example.com", None],
        "first_name": ["Ada", "Bo"],
        "plan": ["pro", "trial"],
        "country": ["US", "DE"],
        "age": [36, None],
        "lifetime_value": [120.5, None],
        "email_opt_in": [True, None],
        "created_at": [datetime(2026, 1, 31, 10, tzinfo=UTC)] * 2,
        "trial_ends_on": [None, date(2026, 4, 10)],
    },
    schema_overrides={"created_at": pl.Datetime("us", "UTC")},
)

PEOPLE_HEADER = (
    "person_id,email,first_name,plan,country,age,lifetime_value,email_opt_in,created_at,"
    "trial_ends_on\n"
)
