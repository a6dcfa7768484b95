"""Dialect rewrites: where an engine reads the same SQL tree with other semantics.

The SQL back end (`transforms.language.sql`) writes trees with DuckDB's semantics; for a
dialect in `DIALECT_REWRITES` the tree is rewritten node by node so that the engine computes
the same values (docs/segment_language.md, "The same on every engine"). Dialects without an
entry are left to sqlglot's transpiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from transforms.language.semantics import DIALECT, DIFF_UNIT_SECONDS, HEX_DIGITS

HEX_NUMBER = "hex_number"
"""node.meta key the SQL back end sets on the TRY_CAST('0x' || digits AS BIGINT) of bucket():
DuckDB reads hexadecimal text so; the other dialects get it written out."""
ROUNDS_HALF_TO_EVEN = "rounds_half_to_even"
"""node.meta key the SQL back end sets on a TRY_CAST of a DOUBLE to an integer: the language
rounds half to even there, as DuckDB's cast does."""


def rewrite(node: exp.Expr, replace: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """Post-order: children first, then the node itself."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            node.set(key, rewrite(value, replace))
        elif isinstance(value, list):
            node.set(key, [rewrite(v, replace) if isinstance(v, exp.Expr) else v for v in value])
    return replace(node)


def _unix_micros(instant_: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this="unix_micros", expressions=[instant_])


def _spark_seconds_between(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    micros = exp.Sub(this=_unix_micros(later), expression=_unix_micros(earlier))
    return exp.Div(this=exp.paren(micros), expression=exp.Literal.number(1_000_000))


def _spark_function(node: exp.Anonymous) -> exp.Expr:
    """`epoch(a - b)`: Spark has no epoch() of an interval; the difference of the instants."""
    if node.name.lower() != "epoch":
        return node
    elapsed = node.expressions[0].unnest()
    return _spark_seconds_between(elapsed.this, elapsed.expression)


def _spark_date_diff(node: exp.DateDiff) -> exp.Expr:
    """date_diff counts unit boundaries crossed (DuckDB, Polars); Spark's DATEDIFF with a unit
    counts whole units elapsed. Written out from truncated instants instead."""
    unit = node.unit.name.upper() if node.unit else "DAY"
    end, start = (
        exp.cast(n, exp.DataType.build("TIMESTAMP")) for n in (node.this, node.expression)
    )
    if unit == "YEAR":
        return exp.Sub(this=exp.Year(this=end), expression=exp.Year(this=start))
    if unit == "MONTH":
        months = [
            exp.Add(
                this=exp.Mul(this=exp.Year(this=x), expression=exp.Literal.number(12)),
                expression=exp.Month(this=x.copy()),
            )
            for x in (end, start)
        ]
        return exp.Sub(this=exp.paren(months[0]), expression=exp.paren(months[1]))
    end, start = (exp.TimestampTrunc(this=x, unit=exp.var(unit)) for x in (end, start))
    seconds = _spark_seconds_between(end, start)
    days = exp.Floor(
        this=exp.Div(this=seconds, expression=exp.Literal.number(DIFF_UNIT_SECONDS[unit]))
    )
    return exp.cast(days, exp.DataType.build("BIGINT"))


def _spark_full_match(node: exp.RegexpFullMatch) -> exp.Expr:
    anchored = exp.Literal.string(f"^(?:{node.expression.this})$")
    return exp.RegexpLike(this=node.this, expression=anchored)


def _hex_digits(node: exp.TryCast) -> exp.Expr:
    """The hexadecimal text of a HEX_NUMBER cast (without its '0x')."""
    return node.this.expression


def _spark_try_cast(node: exp.TryCast) -> exp.Expr:
    """Spark casts a DOUBLE to an integer by truncating; the language rounds half to even.
    Spark reads hexadecimal text with conv()."""
    if node.meta.get(HEX_NUMBER):
        decimal = exp.Anonymous(
            this="conv",
            expressions=[_hex_digits(node), exp.Literal.number(16), exp.Literal.number(10)],
        )
        return exp.cast(decimal, exp.DataType.build("BIGINT"))
    if node.meta.get(ROUNDS_HALF_TO_EVEN):
        node.set("this", exp.Anonymous(this="bround", expressions=[node.this]))
    return node


def _spark_like(node: exp.Like | exp.ILike) -> exp.Expr:
    """A backslash in a Spark LIKE pattern escapes the next character; in the language it is
    just a backslash."""
    pattern = node.expression
    if isinstance(pattern, exp.Literal) and "\\" in pattern.this:
        node.set("expression", exp.Literal.string(pattern.this.replace("\\", "\\\\")))
    return node


SPARK_REWRITES: dict[type[exp.Expr], Callable[[Any], exp.Expr]] = {
    exp.Anonymous: _spark_function,
    exp.DateDiff: _spark_date_diff,
    exp.RegexpFullMatch: _spark_full_match,
    exp.TryCast: _spark_try_cast,
    exp.Like: _spark_like,
    exp.ILike: _spark_like,
}
# Spark's grammar does not chain predicates: `x LIKE 'a%' IS NULL` is a syntax error
SPARK_PREDICATES = (exp.Like, exp.ILike, exp.RegexpLike, exp.In, exp.Between, exp.Is)


def _for_spark(node: exp.Expr) -> exp.Expr:
    in_parens = isinstance(node.parent, exp.Paren)
    rewrite = SPARK_REWRITES.get(type(node))
    node = rewrite(node) if rewrite else node
    return exp.paren(node) if isinstance(node, SPARK_PREDICATES) and not in_parens else node


def _portable(node: exp.Expr) -> exp.Expr:
    """For dialects without rewrites of their own: hexadecimal text to a number digit by
    digit (position in '0123456789abcdef' times a power of 16), with functions every SQL
    dialect has."""
    if not (isinstance(node, exp.TryCast) and node.meta.get(HEX_NUMBER)):
        return node
    digits, terms = _hex_digits(node), []
    for index in range(HEX_DIGITS):
        digit = exp.Substring(
            this=digits.copy(), start=exp.Literal.number(index + 1), length=exp.Literal.number(1)
        )
        value = exp.Sub(
            this=exp.StrPosition(this=exp.Literal.string("0123456789abcdef"), substr=digit),
            expression=exp.Literal.number(1),
        )
        power = 16 ** (HEX_DIGITS - 1 - index)
        terms.append(exp.Mul(this=exp.paren(value), expression=exp.Literal.number(power)))
    total = terms[0]
    for term in terms[1:]:
        total = exp.Add(this=total, expression=term)
    return exp.cast(exp.paren(total), exp.DataType.build("BIGINT"))


DIALECT_REWRITES: dict[str, Callable[[exp.Expr], exp.Expr]] = {"spark": _for_spark}


def for_dialect(tree: exp.Expr, dialect: str) -> exp.Expr:
    """`tree` (written with DuckDB's semantics) rewritten where `dialect` means something else
    by the same SQL. Dialects without an entry are left to sqlglot's transpiler, but for what
    it cannot write (`_portable`)."""
    if dialect == DIALECT:
        return tree
    return rewrite(tree, DIALECT_REWRITES.get(dialect, _portable))
