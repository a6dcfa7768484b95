"""What the Airflow DAGs call: which date a DAG run processes, where its settings come from, and
each task's body with Airflow's failure rules. Airflow is imported inside functions only, so the
package works (and imports fast) without it.

Which date: `segments_refresh` runs on a cron trigger (`CronTriggerTimetable`, data interval of
zero length), so a run's logical date is the instant it was due. The run due at 02:00 UTC on
28 Nov processes D = 27 Nov, the last complete day. A manual run may have no logical date: it
then counts from the time it was queued for (`run_after`), which Airflow stores with the run,
so clearing and rerunning it processes the same D. The `date` param overrides both. The wall
clock is never read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from transforms.config import Settings, load_settings
from transforms.engines.registry import DEFAULT_ENGINE
from transforms.errors import ConcurrentRunError, ConfigError, SegmentsError
from transforms.storage.records import Part

log = logging.getLogger("segments.scheduling")
CONFIG_VARIABLE = "segments_config"
"""The Airflow Variable naming the segments.yaml to use (else SEGMENTS_CONFIG / the defaults)."""


def run_date(param: str | None, logical_date: datetime | None, run_after: datetime) -> date:
    """The date D a DAG run of segments_refresh processes; see the module docstring."""
    if param:
        try:
            return date.fromisoformat(param)
        except ValueError as exc:
            raise ConfigError(
                f"the date param {param!r} is not a date", hint="give it as YYYY-MM-DD"
            ) from exc
    due = logical_date or run_after
    return (due.astimezone(UTC) - timedelta(days=1)).date()


def settings() -> Settings:
    """Settings for a task: the file the `segments_config` Variable names, if set."""
    from airflow.sdk import Variable

    return load_settings(Variable.get(CONFIG_VARIABLE, default=None))


@contextmanager
def task_boundary(restart_hint: str | None = None) -> Iterator[None]:
    """Turn the project's errors into Airflow's: a terminal one fails the task with no retry
    and says why in the task log; a transient one (object store 5xx, throttling) is raised
    as it is, so the task's retries apply. A lost commit race cannot pass by retrying the
    same task: with `restart_hint` it fails the task and says how to rerun the whole run."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except SegmentsError as exc:
        if restart_hint and isinstance(exc, ConcurrentRunError):
            log.error("%s\n  fix: %s", exc.message, restart_hint)
            raise AirflowFailException(f"{exc.message} ({restart_hint})") from exc
        if exc.terminal:
            log.error("%s", exc)
            raise AirflowFailException(str(exc)) from exc
        log.warning("transient: %s (the task will be retried)", exc)
        raise


def _params_date(context: Any) -> date:
    return run_date(
        context["params"].get("date"), context.get("logical_date"), context["dag_run"].run_after
    )


def start_run(context: Any) -> dict[str, Any]:
    """The refresh's first task: plan an attempt at run D, then read D's landing files."""
    from transforms.runs.attempt import begin
    from transforms.runs.iceberg import open_catalog
    from transforms.runs.steps import ingest_step
    from transforms.storage.catalog import read_catalog
    from transforms.storage.roots import Root

    params = context["params"]
    with task_boundary():
        day = _params_date(context)
        config = settings()
        open_catalog(config)  # the publish task's catalog: refused before the run, not after
        later = read_catalog(Root(config.lake, config.storage_options)).later(day)
        plan = begin(
            config,
            day,
            accept_shrink=params.get("accept_shrink", False),
            engine=params.get("engine", DEFAULT_ENGINE),
            full=params.get("full", False),
            reingest=params.get("reingest", False),
            allowed_later=tuple(later) if params.get("rebuild_later") else (),
        )
        log.info(
            "run %s: attempt %s (from %s)",
            day,
            plan.attempt,
            "the date param" if params.get("date") else "the run's due time",
        )
        result = ingest_step(config, plan)
    return {"date": day.isoformat(), "attempt": plan.attempt, **result.summary()}


class Handle(Part):
    """What a task of the refresh hands the next (its return value, through XCom): the run's
    date, the attempt's name until the commit, and the step's counts (`summary()` of its
    result), which the tasks after it do not read."""

    date: date
    attempt: str | None = None


RESTART = (
    "another run committed while this one was computing: clear this whole DAG run (not just"
    " the commit task) to compute it again against what committed"
)


def run_step(name: str, handle: dict[str, Any]) -> dict[str, Any]:
    """A later task of the refresh: step `name` of the attempt `start_run` planned (`handle`:
    what the task before returned)."""
    from transforms.runs.attempt import load_attempt
    from transforms.runs.steps import STEPS, commit_step
    from transforms.storage import lake
    from transforms.storage.roots import Root

    step = {s.__name__.removesuffix("_step"): s for s in STEPS}[name]
    given = Handle.model_validate(handle)
    with task_boundary(RESTART if name == "commit" else None):
        config = settings()
        plan = load_attempt(config, given.date, given.attempt)
        if step is commit_step:
            manifest = commit_step(config, plan)
            url = Root(config.lake, config.storage_options).url_of(
                lake.manifest_path(plan.day, plan.attempt)
            )
            return {"date": manifest.run_date, "manifest": url, "rows": manifest.rows}
        result = step(config, plan)
    return {"date": plan.day.isoformat(), "attempt": plan.attempt, **result.summary()}


def publish_run(committed: dict[str, Any]) -> dict[str, Any]:
    """The refresh's task after `commit`: publish the committed run to the Iceberg tables, and
    any committed run whose tables a crash left unpublished or stale."""
    from transforms.runs.iceberg import publish_runs

    with task_boundary():
        result = publish_runs(settings())
    for day, rows in result.runs.items():
        log.info("published run %s to Iceberg: %s", day, rows)
    return {
        "date": committed["date"],
        "manifest": committed["manifest"],
        "published": sorted(result.runs),
        "seconds": result.seconds,
    }


def report_run(handle: dict[str, Any]) -> dict[str, Any]:
    """The refresh's last task: log what the committed run did, per segment."""
    from transforms.insights.report import html_report
    from transforms.runs.report import report

    with task_boundary():
        config = settings()
        result = html_report(config, report(config, Handle.model_validate(handle).date))
    sizes = result.segments.values()
    return {
        "date": result.date,
        "people": result.people,
        "segments": len(result.segments),
        "memberships": sum(c.size for c in sizes),
        "entered": sum(c.entered for c in sizes),
        "exited": sum(c.exited for c in sizes),
        "report": result.html,
    }


def check_inbox(context: Any) -> dict[str, Any]:
    """The inbox DAG's task: refuse uploads that cannot be applied, dry-run the others, for
    the next refresh run: the one after the latest commit, or of the last complete day if that
    is later (refusals are filed under that run's date, so its report lists them)."""
    from transforms.manual.inbox import check_uploads

    last_complete = run_date(None, context.get("logical_date"), context["dag_run"].run_after)
    with task_boundary():
        result = check_uploads(settings(), move_refused=True, not_before=last_complete)
    for refused in result.rejected:
        log.warning(
            "refused %s: %s (%s)", refused.file, "; ".join(refused.problems), refused.moved_to
        )
    for upload in result.checked:
        if upload.action == "clear":
            log.info("%s: clears the segment at the next refresh", upload.file)
            continue
        matched = "?" if result.snapshot is None else upload.applied
        log.info(
            "%s: %d rows, %s match people, %d unknown, %d ambiguous emails (snapshot %s)",
            upload.file,
            upload.rows,
            matched,
            upload.unknown_count,
            upload.ambiguous_count,
            result.snapshot or "none yet",
        )
    return {
        "day": result.day.isoformat(),
        "checked": len(result.checked),
        "rejected": len(result.rejected),
        "snapshot": result.snapshot,
    }
