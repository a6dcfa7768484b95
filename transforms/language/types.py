"""The types of a checked predicate: what the check pass records on every node, and the rules
that bring two operands to one type.

The check pass (`transforms.language.check`) stores an `Annotation` on each node it accepts;
event-function calls also record the feature they read and `in_segment` calls the segment they
read. Back ends read these annotations (`annotation`, `feature_of`, `segment_of`) and never
anything another back end wrote. The rules here are pure functions of annotations: the check
pass calls them to refuse a predicate, back ends to know what an operand becomes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlglot import exp

from transforms.contracts.text import ISO_DATE, ISO_TIMESTAMP_CONSTANT
from transforms.language.semantics import DIALECT, NUMERIC, TEMPORAL
from transforms.language.source import source_text

ANNOTATION, FEATURE, SEGMENT, PERIODS = "annotation", "feature", "segment", "periods"
TENURE = "tenure"
"""The node.meta keys the check pass owns."""


class CheckError(Exception):
    """A predicate problem at a node; becomes a DefinitionError with the file position.
    `problems` is every problem it stands for: itself, or those `several` gathered."""

    def __init__(self, message: str, node: exp.Expr | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.node, self.hint = message, node, hint
        self.problems: list[CheckError] = [self]


def several(problems: list[CheckError]) -> CheckError:
    """One error standing for `problems` (found in independent parts of a predicate)."""
    first = problems[0]
    gathered = CheckError(first.message, first.node, first.hint)
    gathered.problems = [p for problem in problems for p in problem.problems]
    return gathered


@dataclass(frozen=True)
class Annotation:
    """A checked node: its type, and its value when it is a constant."""

    type: str
    value: Any = None
    constant: bool = False
    source: str | None = None
    """For a CAST: the type of the value it converts."""


def constant(value: Any, type_: str) -> Annotation:
    return Annotation(type_, value, constant=True)


def annotation(node: exp.Expr) -> Annotation:
    """What the check pass found a node to be."""
    return node.meta[ANNOTATION]


def feature_of(node: exp.Expr) -> str | None:
    """The feature column an event-function call reads, if it is one."""
    return node.meta.get(FEATURE)


def periods_of(node: exp.Expr) -> tuple[tuple[str, ...], int, int] | None:
    """For a performed_regularly call: the count feature of each period (the latest first),
    how many events a period needs and how many periods must have them."""
    return node.meta.get(PERIODS)


def tenure_of(node: exp.Expr) -> str | None:
    """The segment a `days_in_segment` call reads, if it is one."""
    return node.meta.get(TENURE)


def tenures(predicates: list[exp.Expr | None]) -> list[str]:
    """The segments whose days_in_segment the predicates read, sorted."""
    return sorted(
        {tenure_of(n) for p in predicates if p is not None for n in p.walk() if tenure_of(n)}
    )


def segment_of(node: exp.Expr) -> str | None:
    """The segment an `in_segment` call reads, if it is one."""
    return node.meta.get(SEGMENT)


def is_bucket(node: exp.Expr) -> bool:
    """Whether a node is a bucket(n[, 'salt']) call."""
    return isinstance(node, exp.Anonymous) and node.name.lower() == "bucket"


def bucket_arguments(node: exp.Expr) -> tuple[int, str]:
    """(n, salt) of a checked bucket(n[, 'salt']) call."""
    args = node.expressions
    return annotation(args[0]).value, args[1].this if len(args) > 1 else ""


def shown(node: Any) -> str:
    """A node as the user wrote it (as sqlglot prints it when its text is not known)."""
    if not isinstance(node, exp.Expr):
        return str(node)
    return source_text(node) or node.sql(dialect=DIALECT)


def parse_time(text: str, type_: str, node: exp.Expr) -> date | datetime:
    """A quoted date or timestamp constant (UTC), or a CheckError at `node`."""
    pattern = ISO_DATE if type_ == "date" else ISO_TIMESTAMP_CONSTANT
    if not re.fullmatch(pattern, text.strip()):
        raise CheckError(
            f"'{text}' is not a valid {type_}",
            node,
            "write dates as 'YYYY-MM-DD' and timestamps as 'YYYY-MM-DD HH:MM:SS' (UTC)",
        )
    try:
        if type_ == "date":
            return date.fromisoformat(text.strip())
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        raise CheckError(f"'{text}' is not a valid {type_}", node) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_timestamp(typed: Annotation) -> Annotation:
    """A date (or NULL) next to a timestamp: its midnight UTC."""
    if typed.type == "null":
        return Annotation("timestamp")
    if typed.type != "date":
        return typed
    if typed.constant:
        return constant(datetime.combine(typed.value, time(), UTC), "timestamp")
    return Annotation("timestamp")


def unify(
    left: Annotation,
    right: Annotation,
    node: exp.Expr,
    verb: str = "compare",
    operands: tuple[exp.Expr, exp.Expr] | None = None,
) -> tuple[Annotation, Annotation]:
    """Bring two operands to a common type the way SQL engines do, or refuse. `operands` are
    the nodes of `left` and `right` when they are not `node`'s own left and right (IN,
    BETWEEN, CASE)."""
    lt, rt = left.type, right.type
    if lt == rt or "null" in (lt, rt) or (lt in NUMERIC and rt in NUMERIC):
        return left, right
    if lt in TEMPORAL and rt in TEMPORAL:
        return as_timestamp(left), as_timestamp(right)
    for a, b, swap in ((left, right, False), (right, left, True)):
        if a.type == "string" and a.constant and b.type in TEMPORAL:
            parsed = constant(parse_time(a.value, b.type, node), b.type)
            return (b, parsed) if swap else (parsed, b)
    first, second = operands or (node.left, node.right)
    raise CheckError(
        f"cannot {verb} {shown(first)} ({lt}) with {shown(second)} ({rt})",
        node,
        "CAST one side to the other's type",
    )


def common_type(values: list[Annotation], node: exp.Expr) -> Annotation:
    """The one type of values combined (COALESCE, CASE): numbers widen, dates become
    timestamps next to timestamps; NULL when every value is NULL."""
    types = {v.type for v in values} - {"null"}
    if not types:
        return Annotation("null")
    if types <= set(NUMERIC):
        return Annotation("number" if "number" in types else "integer")
    if types <= set(TEMPORAL) and len(types) == 2:
        types = {"timestamp"}
    if len(types) != 1:
        raise CheckError(
            f"values of different types ({', '.join(sorted(types))}) cannot be combined",
            node,
            "CAST them to one type",
        )
    (target,) = types
    return Annotation(target)


def as_condition(typed: Annotation, node: exp.Expr) -> None:
    """Refuse a value used as a condition that is not a boolean (or NULL)."""
    if typed.type not in ("boolean", "null"):
        raise CheckError(
            f"{shown(node)} is {typed.type}, not a condition",
            node,
            "compare it with something (e.g. = 'value', > 0, IS NOT NULL)",
        )
