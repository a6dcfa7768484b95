"""A run's definitions through the first passes: each predicate parsed and checked, the
segments in dependency order, and the event aggregates they need.

What this module returns is all a back end needs: the Polars back end
(`transforms.language.polars`) and the SQL back end (`transforms.language.sql`) both start from
`CheckedDefinitions`. Every problem of every segment is collected, each a DefinitionError with
its file position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from transforms.contracts.odcs import TableContract
from transforms.errors import DefinitionError, DefinitionErrors
from transforms.language.check import Scope, check
from transforms.language.definitions import Segment
from transforms.language.graph import levels
from transforms.language.semantics import DIALECT, SEGMENT_PREFIX, EventAggregate
from transforms.language.source import remember_source, source_span
from transforms.language.types import CheckError, as_condition, shown


@dataclass(frozen=True)
class CheckedSegment:
    """A segment whose predicate passed the check pass (none for a manual segment)."""

    id: str
    manual: bool
    predicate: exp.Expr | None
    features: tuple[str, ...]
    references: tuple[str, ...]

    @property
    def column(self) -> str:
        return SEGMENT_PREFIX + self.id

    def canonical(self) -> str:
        return self.predicate.sql(dialect=DIALECT, pretty=True) if self.predicate else ""


@dataclass
class CheckedDefinitions:
    """Every segment checked for one run: dependency order, and the features they need."""

    as_of: datetime
    segments: dict[str, CheckedSegment]
    order: list[list[str]]
    """Segments in dependency levels: each level only references earlier ones."""
    features: dict[str, EventAggregate]


def _offset(node: exp.Expr | None) -> int | None:
    if node is None:
        return None
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    return min(starts) if starts else None


def _error(
    segment: Segment, message: str, offset: int | None, text: str | None, hint: str | None
) -> DefinitionError:
    line, column = segment.position(offset) if offset is not None else (segment.where_line, None)
    return DefinitionError(
        message, file=segment.file, line=line, column=column, text=text, hint=hint
    )


def _check_error(segment: Segment, problem: CheckError) -> DefinitionError:
    """A problem of the check pass at its place in the file, quoting what the user wrote."""
    node = problem.node
    span = source_span(node) if node is not None else None
    offset = span[0] if span else _offset(node)
    text = shown(node) if node is not None else None
    return _error(segment, problem.message, offset, text, problem.hint)


def parse_predicate(segment: Segment) -> exp.Expr:
    """The `where` text as one sqlglot expression, or a DefinitionError saying where it breaks."""
    text = segment.spec.where or ""
    try:
        statements = [s for s in sqlglot.parse(text, dialect=DIALECT) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        offset = None
        if first.get("line"):
            lines = text.split("\n")
            offset = sum(len(x) + 1 for x in lines[: first["line"] - 1]) + max(first["col"] - 1, 0)
        raise _error(
            segment,
            f"cannot parse the predicate: {first.get('description', exc)}",
            offset,
            first.get("highlight"),
            "check quotes and parentheses",
        ) from None
    except TokenError as exc:
        raise _error(
            segment,
            f"cannot read the predicate: {exc}",
            None,
            None,
            "check that every quote is closed",
        ) from None
    if len(statements) != 1:
        raise _error(
            segment,
            "a predicate is one expression, not several statements",
            None,
            None,
            "remove the ';' and everything after it",
        )
    return remember_source(statements[0], text)


def _check_segment(segment: Segment, scope: Scope) -> CheckedSegment:
    if segment.is_manual:
        return CheckedSegment(segment.id, True, None, (), ())
    tree = parse_predicate(segment)
    try:
        try:
            as_condition(check(tree, scope), tree)
        except (OverflowError, ValueError, TypeError) as exc:
            raise CheckError(
                f"cannot compile this predicate: {exc}",
                tree,
                "a value is out of range or of the wrong type",
            ) from exc
    except CheckError as exc:
        raise DefinitionErrors([_check_error(segment, p) for p in exc.problems]) from None
    return CheckedSegment(
        segment.id,
        False,
        tree,
        tuple(dict.fromkeys(scope.used_features)),
        tuple(dict.fromkeys(scope.references)),
    )


def person_scope(
    people: TableContract,
    events: TableContract,
    as_of: datetime,
    segments: frozenset[str],
    features: dict[str, EventAggregate],
) -> Scope:
    """Where a predicate is checked: people columns, event functions, the run's segments."""
    return Scope(
        columns={c.name: c.logical_type for c in people.columns},
        as_of=as_of,
        events=events,
        segments=segments,
        features=features,
    )


def check_segments(
    segments: dict[str, Segment], people: TableContract, events: TableContract, as_of: datetime
) -> tuple[CheckedDefinitions, list[DefinitionError]]:
    """Check every segment for the run whose as-of instant is `as_of`; collect all problems."""
    features: dict[str, EventAggregate] = {}
    checked: dict[str, CheckedSegment] = {}
    problems: list[DefinitionError] = []
    ids = frozenset(segments)
    for sid in sorted(segments):
        scope = person_scope(people, events, as_of, ids, features)
        try:
            checked[sid] = _check_segment(segments[sid], scope)
        except DefinitionError as exc:
            problems.append(exc)
        except DefinitionErrors as exc:
            problems += exc.problems
    order, cycles = levels({sid: c.references for sid, c in checked.items()}, segments)
    problems.extend(cycles)
    used = {f for c in checked.values() for f in c.features}
    needed = {n: f for n, f in features.items() if n in used}
    return CheckedDefinitions(as_of, checked, order, needed), problems
