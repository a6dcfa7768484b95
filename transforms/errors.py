"""The project's exceptions: one root, a few subclasses that carry where and how to fix.

`terminal` tells a scheduler whether retrying can help: a bad contract, definition or input
file stays bad until someone changes it; a flaky object store may recover.
"""

from __future__ import annotations


class SegmentsError(Exception):
    """Root of every error this project raises on purpose."""

    terminal = True

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class ConfigError(SegmentsError):
    """The configuration file, an environment variable or a flag is wrong."""


class ContractError(SegmentsError):
    """A data contract file is malformed or uses something this project does not support."""

    def __init__(self, message: str, *, file: str, hint: str | None = None) -> None:
        super().__init__(f"{file}: {message}", hint=hint)
        self.file = file


class InputFileError(SegmentsError):
    """An input file cannot be used at all (unreadable, unparseable, missing a column)."""

    def __init__(
        self, message: str, *, file: str, line: int | None = None, hint: str | None = None
    ) -> None:
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {message}", hint=hint)
        self.file = file
        self.line = line


class MissingInputError(SegmentsError):
    """An input the run cannot do without is absent (e.g. the people snapshot of the date)."""


class StorageError(SegmentsError):
    """The object store failed in a way that may pass (network, 5xx, throttling)."""

    terminal = False


class RecordError(SegmentsError):
    """A record of the lake (a manifest, the catalog, a staged result) that this version cannot
    read: damaged, or written by a newer version. Retrying reads the same bytes."""


class StorageAccessError(SegmentsError):
    """The object store refused us (credentials, permissions, missing bucket): retry won't help."""


class DefinitionError(SegmentsError):
    """One problem in one segment definition file, with where it is and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = file
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        shown = f" (at `{text}`)" if text else ""
        super().__init__(f"{where}: {message}{shown}", hint=hint)
        self.file, self.line, self.column, self.text = file, line, column, text
        self.problem = message


class DefinitionErrors(SegmentsError):
    """Every problem found across the definitions folder, reported together."""

    def __init__(self, problems: list[DefinitionError]) -> None:
        super().__init__(
            f"{len(problems)} problem(s) in segment definitions:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
        self.problems = problems


class ConcurrentRunError(SegmentsError):
    """Another run committed while this one was computing; a retry starts from its result."""

    terminal = False


class RunOrderError(SegmentsError):
    """The run would leave later committed runs inconsistent."""


class SnapshotShrinkError(SegmentsError):
    """The people snapshot is empty or much smaller than the previous one."""
