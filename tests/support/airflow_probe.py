"""Airflow, in this process, for the DAG tests; prints one `RESULT <json>` line.

    python tests/support/airflow_probe.py integrity
    python tests/support/airflow_probe.py test DAG_ID LOGICAL_DATE [LOGICAL_DATE ...]
    python tests/support/airflow_probe.py boundary

`integrity` parses the DAG folder with `DagBag` and reports import errors, each DAG's
settings, parse time per file and the modules the DAG files pulled in. `test` runs one
`dag.test()` per logical date, in order, and reports each run's task states. `boundary`
reports what `transforms.scheduling.task_boundary` turns each kind of project error into.
Airflow reads its configuration (AIRFLOW_HOME, the metadata database) when it is first
imported, so the tests run this in a subprocess with an environment of their own.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

DAGS = Path(__file__).parents[2] / "dags"


def integrity() -> dict:
    from airflow.dag_processing.dagbag import DagBag

    before = set(sys.modules)
    bag = DagBag(str(DAGS))
    return {
        "import_errors": bag.import_errors,
        "parse_seconds": {
            Path(stat.file).name: stat.duration.total_seconds() for stat in bag.dagbag_stats
        },
        "new_modules": sorted(set(sys.modules) - before),
        "dags": {
            dag_id: {
                "tags": sorted(dag.tags),
                "max_active_runs": dag.max_active_runs,
                "catchup": dag.catchup,
                "schedule": type(dag.timetable).__name__,
                "retries": {task.task_id: task.retries for task in dag.tasks},
                "tasks": [task.task_id for task in dag.topological_sort()],
                "upstream": {task.task_id: sorted(task.upstream_task_ids) for task in dag.tasks},
                "outlets": {
                    task.task_id: sorted(asset.name for asset in task.outlets) for task in dag.tasks
                },
            }
            for dag_id, dag in bag.dags.items()
        },
    }


def test(dag_id: str, logical_dates: list[str]) -> list[dict]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(DAGS)).get_dag(dag_id)
    runs = []
    for logical in logical_dates:
        run = dag.test(logical_date=datetime.fromisoformat(logical))
        tasks = {
            ti.task_id: {"state": str(ti.state), "try_number": ti.try_number}
            for ti in run.get_task_instances()
        }
        runs.append({"logical_date": logical, "state": str(run.state), "tasks": tasks})
    return runs


def boundary() -> dict:
    from transforms.errors import ConcurrentRunError, DefinitionError, StorageError
    from transforms.scheduling import RESTART, task_boundary

    cases = {
        "terminal": (DefinitionError("bad", file="x.yaml", hint="fix it"), None),
        "transient": (StorageError("503 Slow Down"), None),
        "lost_race_elsewhere": (ConcurrentRunError("lost"), None),
        "lost_race_at_commit": (ConcurrentRunError("lost"), RESTART),
    }
    raised = {}
    for name, (error, hint) in cases.items():
        try:
            with task_boundary(hint):
                raise error
        except Exception as exc:  # what Airflow would see
            raised[name] = type(exc).__name__
    return raised


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    commands = {"integrity": integrity, "boundary": boundary}
    result = commands[command]() if command in commands else test(rest[0], rest[1:])
    print("RESULT " + json.dumps(result))
