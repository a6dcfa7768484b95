"""Which date a DAG run of segments_refresh processes (no Airflow needed)."""

from datetime import UTC, date, datetime

import pytest

from transforms.errors import ConfigError
from transforms.scheduling import run_date

NIGHTLY = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def test_the_nightly_run_processes_the_day_before_it_is_due():
    assert run_date(None, NIGHTLY, NIGHTLY) == date(2026, 11, 27)


def test_the_due_time_counts_in_utc_whatever_its_zone():
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 28, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:30 UTC
    assert run_date(None, local, local) == date(2026, 11, 27)


def test_a_manual_run_without_logical_date_counts_from_when_it_was_queued():
    queued = datetime(2026, 11, 28, 15, 42, tzinfo=UTC)
    assert run_date(None, None, queued) == date(2026, 11, 27)


def test_the_date_param_wins():
    assert run_date("2026-03-30", NIGHTLY, NIGHTLY) == date(2026, 3, 30)


def test_a_malformed_date_param_says_how_to_write_it():
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        run_date("30/03/2026", NIGHTLY, NIGHTLY)
