"""segments_inbox: checks manual-segment uploads soon after they are dropped.

Every 5 minutes it lists the inbox: a file that cannot be applied moves to `_rejected/` with
its error report; the others get a dry run (rows that match people, unknown ids, ambiguous
emails) in the task log and stay where they are for the next `segments_refresh` run, which
does not depend on this DAG. A schedule, not an asset watcher: Airflow's providers ship no
S3 event trigger for watchers, and listing works on every store. See docs/airflow.md.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task


@dag(
    dag_id="segments_inbox",
    schedule=CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segments"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
)
def segments_inbox():
    @task
    def check_uploads() -> dict:
        from transforms.scheduling import check_inbox

        return check_inbox(get_current_context())

    check_uploads()


segments_inbox()
