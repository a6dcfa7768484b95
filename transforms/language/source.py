"""Where a node of a predicate is in the text the user wrote, so that problems quote it as
written (`properties ->> 'plan'`), not as sqlglot prints the tree
(`JSON_EXTRACT_SCALAR(...)`).

sqlglot records positions on the leaves it reads from a token (names, literals, some function
names), not on operators or calls. A node's text is found from its leaves: the smallest run of
the predicate's tokens around them that parses back to the same tree.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

from transforms.language.semantics import DIALECT

SOURCE = "source"
"""node.meta key of a parsed predicate's root: the text it was parsed from."""
LEADING_TOKENS = 6
"""How many tokens a node may start before its first leaf: `CAST(`, `NOT`, `CASE WHEN`..."""
TRAILING_TOKENS = 8
"""How many tokens a node may end after its last leaf: `)`, `AS BIGINT)`, `END`..."""


def remember_source(tree: exp.Expr, text: str) -> exp.Expr:
    """Record on the root of a parsed predicate the text it was parsed from."""
    tree.meta[SOURCE] = text
    return tree


def source_span(node: exp.Expr) -> tuple[int, int] | None:
    """Start and end (exclusive) of `node` in its predicate's text; None when the tree holds
    no text or no position under `node`."""
    text = node.root().meta.get(SOURCE)
    leaves = [n.meta for n in node.walk() if "start" in n.meta]
    if text is None or not leaves:
        return None
    first, last = min(m["start"] for m in leaves), max(m["end"] for m in leaves)
    tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text)
    starts = [i for i, t in enumerate(tokens) if t.start == first]
    ends = [i for i, t in enumerate(tokens) if t.end == last]
    if starts and ends:
        for begin in range(starts[0], max(starts[0] - LEADING_TOKENS, 0) - 1, -1):
            end = _parsing_end(text, tokens, begin, ends[0], node)
            if end is not None:
                return tokens[begin].start, tokens[end].end + 1
    return first, last + 1


def source_text(node: exp.Expr) -> str | None:
    """`node` as the user wrote it, or None when its position is not known."""
    span = source_span(node)
    text = node.root().meta.get(SOURCE)
    return text[span[0] : span[1]] if span and text else None


def _parsing_end(
    text: str, tokens: list[Token], begin: int, least: int, node: exp.Expr
) -> int | None:
    """The first token from `least` on where the tokens from `begin` parse to `node`; None
    once a parenthesis closes one opened before `begin`, or past TRAILING_TOKENS."""
    depth = sum(_nesting(t) for t in tokens[begin:least])
    for end in range(least, min(least + TRAILING_TOKENS + 1, len(tokens))):
        depth += _nesting(tokens[end])
        if depth < 0:
            return None
        if depth == 0 and _parses_to(text[tokens[begin].start : tokens[end].end + 1], node):
            return end
    return None


def _nesting(token: Token) -> int:
    return {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)


def _parses_to(candidate: str, node: exp.Expr) -> bool:
    try:
        return sqlglot.parse_one(candidate, dialect=DIALECT) == node
    except SqlglotError:
        return False
