"""One context per command: the settings, roots, definitions and contracts a command works on,
resolved once from the config file and the flags, with the errors a user can act on.

`@uses("lake", "definitions")` gives a command the workspace options it names (plus `--config`,
declared in `transforms.cli.options`) and calls it with `context=CliContext(...)` instead.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from transforms.cli.options import WORKSPACE_OPTIONS
from transforms.config import Settings, load_settings
from transforms.errors import ConfigError, DefinitionErrors, SegmentsError
from transforms.storage.roots import Root

if TYPE_CHECKING:
    from transforms.contracts.odcs import TableContract
    from transforms.errors import ContractError
    from transforms.language.definitions import Segment
    from transforms.language.polars import CompiledDefinitions


def parse_day(text: str, option: str = "--date") -> date:
    """A YYYY-MM-DD flag value as a date; anything else is a usage error (exit code 2)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date: use YYYY-MM-DD", param_hint=option
        ) from None


@dataclass
class CliContext:
    """What one command invocation works on. Each property is resolved on first use, once."""

    overrides: dict[str, Any] = field(default_factory=dict)
    """The workspace options given on the command line (None when not given)."""

    @cached_property
    def settings(self) -> Settings:
        config = self.overrides.get("config")
        roots = {name: value for name, value in self.overrides.items() if name != "config"}
        try:
            return load_settings(config, **roots)
        except UnicodeDecodeError as exc:
            named = config or "named by SEGMENTS_CONFIG (or ./segments.yaml)"
            raise ConfigError(
                f"the config file {named} is not UTF-8 text", hint="save it as UTF-8 YAML"
            ) from exc

    def root(self, name: str) -> Root:
        """The landing, lake or inbox root."""
        return Root(getattr(self.settings, name), self.settings.storage_options)

    @cached_property
    def lake(self) -> Root:
        return self.root("lake")

    @cached_property
    def inbox(self) -> Root:
        return self.root("inbox")

    @cached_property
    def definitions(self) -> tuple[dict[str, Segment], list[SegmentsError]]:
        """Every segment definition, and every problem found in the folder."""
        from transforms.language.definitions import load_segments

        return load_segments(self.settings.definitions)

    @cached_property
    def contracts(self) -> tuple[dict[str, TableContract], list[ContractError]]:
        """Every contract and every problem; a missing folder is an error, not no contracts."""
        from transforms.contracts.odcs import load_contracts

        if not Path(self.settings.contracts).is_dir():
            raise ConfigError(
                f"the contracts folder {self.settings.contracts} does not exist",
                hint="create it, or point --contracts / SEGMENTS_CONTRACTS at it",
            )
        return load_contracts(self.settings.contracts)

    def compiled(self, day: date) -> CompiledDefinitions:
        """Every definition compiled for `day` (DefinitionErrors lists every problem)."""
        from transforms.runs.materialize import compile_definitions

        return compile_definitions(self.settings, day)

    def segment(self, segment_id: str) -> Segment:
        """The definition SEGMENT names. A missing one is unknown, unless some definition is
        broken (it may be that one): then every problem is the error."""
        segments, problems = self.definitions
        if segment_id in segments:
            return segments[segment_id]
        if problems:
            raise DefinitionErrors(problems)
        raise self.unknown_segment(segment_id, segments)

    def unknown_segment(self, segment_id: str, known: Iterable[str]) -> SegmentsError:
        """The error of a SEGMENT argument that names no definition."""
        close = difflib.get_close_matches(segment_id, list(known), n=1)
        where = (
            "segment ids are the names (without .yaml) of the definition files in"
            f" {self.settings.definitions}"
        )
        return SegmentsError(
            f"unknown segment '{segment_id}'",
            hint=f"did you mean '{close[0]}'? {where}" if close else where,
        )

    def segment_kinds(self) -> dict[str, str]:
        """Segment id -> `data` or `manual`, for the definitions that load."""
        return {sid: s.spec.type for sid, s in self.definitions[0].items()}

    def run_day(self, text: str | None) -> date:
        """`--date`, or the latest committed run's date."""
        if text is not None:
            return parse_day(text)
        from transforms.storage.catalog import read_catalog

        latest = read_catalog(self.lake).latest
        if latest is None:
            raise SegmentsError(
                f"no committed run in {self.settings.lake}",
                hint="run `segments run --date D` first",
            )
        return latest


def uses(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command `--config` and the workspace options `names`; it receives them as one
    `context: CliContext` parameter."""
    unknown = set(names) - set(WORKSPACE_OPTIONS)
    if unknown:
        raise ValueError(f"no workspace option {sorted(unknown)}")
    options = ("config", *names)

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "context"]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=WORKSPACE_OPTIONS[name],
            )
            for name in options
        ]

        @functools.wraps(command)
        def with_context(**kwargs: Any) -> None:
            overrides = {name: kwargs.pop(name) for name in options}
            command(context=CliContext(overrides), **kwargs)

        with_context.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        with_context.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        return with_context

    return decorate
