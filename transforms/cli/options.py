"""Every option and argument the commands share, declared once.

The options that say where a workspace lives (`--config` and the roots and folders it can be
overridden with) are not parameters of the commands: `transforms.cli.context.uses` adds the
ones a command names to its signature and hands the command a `CliContext` built from them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from transforms.engines.registry import DEFAULT_ENGINE, ENGINES

WORKSPACE_OPTIONS: dict[str, Any] = {
    "config": Annotated[
        Path | None, typer.Option("--config", help="Config file (default ./segments.yaml).")
    ],
    "landing": Annotated[str | None, typer.Option(help="Landing root (path or s3:// URL).")],
    "lake": Annotated[str | None, typer.Option(help="Lake root (path or s3:// URL).")],
    "inbox": Annotated[str | None, typer.Option(help="Inbox root (path or s3:// URL).")],
    "definitions": Annotated[str | None, typer.Option(help="Segment definitions folder.")],
    "contracts": Annotated[str | None, typer.Option(help="Data contracts folder.")],
    "spark_master": Annotated[
        str | None, typer.Option(help="Spark master for --engine spark (default local[2]).")
    ],
    "spark_remote": Annotated[
        str | None, typer.Option(help="Spark Connect URL (sc://host:15002) for --engine spark.")
    ],
}
"""Option name -> its declaration; each overrides the config file's setting of that name."""

DateOpt = Annotated[str, typer.Option("--date", help="The run's logical date D (YYYY-MM-DD, UTC).")]
OptionalDateOpt = Annotated[
    str | None,
    typer.Option("--date", help="The run date D (YYYY-MM-DD); default: the latest committed run."),
]
EngineName = StrEnum("EngineName", {name: name for name in ENGINES})
"""The engines' names (`transforms.engines.registry`), as the choices of `--engine`."""
EngineOpt = Annotated[
    EngineName,
    typer.Option(
        help="Where membership is computed: polars (in process), or duckdb or spark (the SQL"
        " `compile --dialect` prints)."
    ),
]
DEFAULT_ENGINE_NAME = EngineName(DEFAULT_ENGINE)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
SegmentArg = Annotated[str, typer.Argument(help="Segment id (its definition file's stem).")]
