"""Segments in dependency order: `in_segment` reads only segments of earlier levels."""

from __future__ import annotations

from transforms.errors import DefinitionError
from transforms.language.definitions import Segment


def levels(
    references: dict[str, tuple[str, ...]], segments: dict[str, Segment]
) -> tuple[list[list[str]], list[DefinitionError]]:
    """Dependency levels of the segments in `references` (each segment's references), and an
    error per cycle naming every segment on it."""
    # references to segments that failed to compile are already reported problems
    remaining = {sid: set(refs) & set(references) for sid, refs in references.items()}
    order: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(sid for sid, refs in remaining.items() if refs <= done)
        if not ready:
            break
        order.append(ready)
        done.update(ready)
        for sid in ready:
            del remaining[sid]
    problems = []
    reported: set[str] = set()
    for start in sorted(remaining):
        if start in reported:
            continue
        path, node = [start], start
        while True:
            node = sorted(r for r in remaining[node] if r in remaining)[0]
            if node in path:
                cycle = path[path.index(node) :] + [node]
                break
            path.append(node)
        if set(cycle) <= reported:
            continue
        reported.update(cycle)
        first = segments[cycle[0]]
        problems.append(
            DefinitionError(
                "cycle: " + " -> ".join(cycle),
                file=first.file,
                line=first.where_line,
                hint="a segment cannot depend on itself through in_segment(); break the cycle",
            )
        )
    return order, problems
