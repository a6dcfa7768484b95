"""Segment predicates compiled to Polars: the passes in order.

parse (`transforms.language.checked.parse_predicate`) -> check and annotate types
(`transforms.language.check`) -> the Polars back end (`transforms.language.polars`). The SQL
back end (`transforms.language.sql`) starts from the same checked definitions.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from sqlglot import exp

from transforms.contracts.odcs import TableContract
from transforms.errors import DefinitionError
from transforms.language.check import check
from transforms.language.checked import check_segments, person_scope
from transforms.language.definitions import Segment
from transforms.language.polars import CompiledDefinitions, compile_to_polars, condition
from transforms.language.types import as_condition


def compile_segments(
    segments: dict[str, Segment], people: TableContract, events: TableContract, as_of: datetime
) -> tuple[CompiledDefinitions, list[DefinitionError]]:
    """Compile every segment for the run whose as-of instant is `as_of`; collect all problems."""
    checked, problems = check_segments(segments, people, events, as_of)
    return compile_to_polars(checked), problems


def condition_expression(
    node: exp.Expr, compiled: CompiledDefinitions, people: TableContract, events: TableContract
) -> pl.Expr:
    """A condition inside a compiled predicate (any boolean subtree) as a Polars expression
    over the columns `transforms.engines.membership.segment_columns` builds: what `segments why`
    evaluates node by node. Event functions resolve to the compiled definitions' features by
    name."""
    scope = person_scope(
        people, events, compiled.as_of, frozenset(compiled.segments), dict(compiled.features)
    )
    as_condition(check(node, scope), node)
    return condition(node, compiled.as_of)
