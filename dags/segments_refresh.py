"""segments_refresh: one run per date D, every night, in order.

The run due at 02:00 UTC on day X processes D = X - 1 (the last complete day); a manual
trigger may name D with the `date` param. Each task calls `transforms.scheduling`, which runs
one step of `transforms.runs.steps` (the same functions `segments run` calls; the first task
begins the attempt) and hands the next only the run's date, its attempt name and counts.
`publish` copies the committed run into the Iceberg tables and emits the assets
`segments.membership` and `segments.changes`, so consumer DAGs can be scheduled on fresh
membership. See docs/airflow.md.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, CronTriggerTimetable, Param, dag, get_current_context, task

from transforms.engines.registry import DEFAULT_ENGINE, ENGINES

MEMBERSHIP = Asset(name="segments.membership")
CHANGES = Asset(name="segments.changes")


@dag(
    dag_id="segments_refresh",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segments"],
    doc_md=__doc__,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The date D to process (YYYY-MM-DD); empty: the day before the run's"
            " due time.",
        ),
        "accept_shrink": Param(
            False, type="boolean", description="Accept a people snapshot past the guard rail."
        ),
        "rebuild_later": Param(
            False,
            type="boolean",
            description="Allow rerunning D while later runs are committed (rerun those next,"
            " in order).",
        ),
        "engine": Param(DEFAULT_ENGINE, enum=list(ENGINES), description="The engine."),
        "full": Param(
            False,
            type="boolean",
            description="Recompute the event features from every event instead of folding the"
            " previous run's state.",
        ),
        "reingest": Param(
            False,
            type="boolean",
            description="Read D's landing files again even if they did not change since D was"
            " ingested (a run re-ingests by itself when they did).",
        ),
    },
)
def segments_refresh():
    @task
    def ingest() -> dict:
        from transforms.scheduling import start_run

        return start_run(get_current_context())

    @task
    def step(name: str, handle: dict) -> dict:
        from transforms.scheduling import run_step

        return run_step(name, handle)

    @task
    def commit(handle: dict) -> dict:
        from transforms.scheduling import run_step

        return run_step("commit", handle)

    @task(outlets=[MEMBERSHIP, CHANGES])
    def publish(committed: dict) -> dict:
        from transforms.scheduling import publish_run

        published = publish_run(committed)
        events = get_current_context()["outlet_events"]
        for asset in (MEMBERSHIP, CHANGES):
            events[asset].extra = {"run_date": committed["date"], "manifest": committed["manifest"]}
        return published

    @task
    def report(handle: dict) -> dict:
        from transforms.scheduling import report_run

        return report_run(handle)

    handle = ingest()
    for name in ("validate", "manual", "materialize", "diff"):
        handle = step.override(task_id=name)(name, handle)
    committed = commit(handle)
    publish(committed)
    report(committed)


segments_refresh()
