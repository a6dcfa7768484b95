"""The `segments` command line: the commands, one error handler for all of them, logging.

Commands only parse flags, call `transforms` functions with the context their options name
(`transforms.cli.context`) and hand the results to `transforms.cli.render`; all logic lives
in the modules they call. The commands are in `pipeline` (ingest, run, publish, files, demo,
and manual add/remove/replace/clear/check), `authoring` (validate, compile, preview,
contracts) and `investigate` (why, plan, history).
"""

from __future__ import annotations

import errno
import logging
import warnings
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from typer.core import TyperGroup

from transforms.cli import authoring, investigate, pipeline, render
from transforms.errors import ConfigError, SegmentsError
from transforms.logs import is_result


def _path_error(exc: OSError) -> SegmentsError:
    where = f": {exc.filename}" if exc.filename else ""
    return ConfigError(
        f"{exc.strerror or exc}{where}",
        hint="check that path and its permissions (a flag, the config file or a SEGMENTS_*"
        " variable names it)",
    )


class _Commands(TyperGroup):
    """Runs the chosen command; any SegmentsError it raises, or an OSError on a path it
    reads or writes, ends it with `error:`/`fix:` on stderr and exit code 1, not a traceback.
    Usage errors keep click's handling (exit code 2)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SegmentsError as exc:
            render.error(exc)
            raise typer.Exit(code=1) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # stdout closed early (`| head`): click handles it
                raise
            render.error(_path_error(exc))
            raise typer.Exit(code=1) from exc


app = typer.Typer(
    cls=_Commands,
    help="Keep customer segments up to date from warehouse snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
contracts_app = typer.Typer(
    cls=_Commands, help="Data contracts: check them, print their docs.", no_args_is_help=True
)
app.add_typer(contracts_app, name="contracts")
manual_app = typer.Typer(
    cls=_Commands,
    help="Manual segments: drop uploads into the inbox, check what the next run applies.",
    no_args_is_help=True,
)
app.add_typer(manual_app, name="manual")


def _log_handler(verbose: bool) -> logging.Handler:
    """Progress and warnings on stderr: rich's columns on a terminal, plain unwrapped lines
    when stderr is a pipe or a file. Results the command prints itself (`transforms.logs`)
    only with --verbose."""
    if render.errors.is_terminal:
        handler: logging.Handler = RichHandler(
            console=render.errors, show_path=False, log_time_format="%H:%M:%S"
        )
    else:
        handler = logging.StreamHandler(render.errors.file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        )
    if not verbose:
        handler.addFilter(lambda record: not is_result(record))
    return handler


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    # libraries' notices about their own future versions (PySpark's on pandas, imported by
    # Great Expectations) are for this project's developers, not for a command's output
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logger = logging.getLogger("segments")
    logger.handlers[:] = [_log_handler(verbose)]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


for name, command in (
    ("ingest", pipeline.ingest),
    ("validate", authoring.validate),
    ("compile", authoring.compile_),
    ("preview", authoring.preview),
    ("run", pipeline.run),
    ("publish", pipeline.publish),
    ("files", pipeline.files),
    ("demo", pipeline.demo),
    ("why", investigate.why),
    ("plan", investigate.plan),
    ("history", investigate.history),
):
    app.command(name)(command)
for name, command in (
    ("add", pipeline.manual_add),
    ("remove", pipeline.manual_remove),
    ("replace", pipeline.manual_replace),
    ("clear", pipeline.manual_clear),
    ("check", pipeline.manual_check),
):
    manual_app.command(name)(command)
contracts_app.command("check")(authoring.contracts_check)
contracts_app.command("docs")(authoring.contracts_docs)
