"""Log records that state a result (a run's counts, an upload applied or refused) carry
`extra=RESULT`. An Airflow task log keeps them: it is where a DAG run's results are read. The
command line prints the same facts as tables on stdout, so its log on stderr leaves them out
(`segments -v` shows them)."""

RESULT = {"result": True}


def is_result(record: object) -> bool:
    """Whether a log record states a result (logged with `extra=RESULT`)."""
    return bool(getattr(record, "result", False))
