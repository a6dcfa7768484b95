"""Every repository path the docs cite exists: in the Markdown docs, in the docstrings of the
package and the DAGs, and in the strings they show users (errors, hints, command output).

A citation is a token that looks like a path of this repository: it starts with one of its
source folders (`docs/tables.md`, `transforms/runs/`, `tests/support/*.py`), is a module of
the package named from its root (`runs/steps.py`), or is a bare Markdown file name
(`README.md`, which may also be relative to the citing file's folder, as `tables.md` is in
`docs/`). URLs, workspace paths (`<lake>/runs/`, `lake/runs/latest.json`,
`landing/people/D/`) and placeholders (`<segment>`, `{table}`, `run_date=D`) are not citations.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = (
    "benchmarks",
    "dags",
    "data_contracts",
    "docs",
    "segment_definitions",
    "tests",
    "transforms",
)
"""The repository's top-level folders: a path starting with one of them is a citation."""
PACKAGE = "transforms"
SUBPACKAGES = tuple(sorted(p.parent.name for p in (REPO / PACKAGE).glob("*/__init__.py")))
"""A module cited from the package's root (`runs/steps.py`, as docs/architecture.md does) is a
citation too."""
MARKDOWN_DOCS = ("README.md", "docs/*.md", "benchmarks/README.md", "transforms/**/*.md")
PYTHON_SOURCES = ("transforms/**/*.py", "dags/**/*.py")

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
TOKEN = re.compile(r"[\w./*<>{}=-]+")
BARE_MARKDOWN = re.compile(r"[\w-]+\.md")
PLACEHOLDER = re.compile(r"[<>{}=]")


@dataclass(frozen=True)
class Citation:
    file: Path
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}: {self.path}"


def cites_repo_path(token: str) -> bool:
    if PLACEHOLDER.search(token):
        return False
    first, slash, _ = token.partition("/")
    if not slash:
        return BARE_MARKDOWN.fullmatch(token) is not None
    return first in SOURCE_FOLDERS or (first in SUBPACKAGES and token.endswith(".py"))


def cited_paths(text: str) -> list[str]:
    """The repository paths `text` cites, in order."""
    tokens = (token.rstrip(".") for token in TOKEN.findall(URL.sub(" ", text)))
    return [token for token in tokens if cites_repo_path(token)]


def _text_of(node: ast.Constant | ast.JoinedStr) -> str:
    """A string literal's text; an f-string's replacement fields become `<>` (a placeholder)."""
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(v.value if isinstance(v, ast.Constant) else "<>" for v in node.values)


def python_strings(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal of a module: docstrings, errors and hints, output.
    An f-string is one string, not its pieces."""
    tree = ast.parse(source)
    pieces = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    for node in ast.walk(tree):
        literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if (literal or isinstance(node, ast.JoinedStr)) and id(node) not in pieces:
            yield node.lineno, _text_of(node)


def citations_in(file: Path) -> Iterator[Citation]:
    text = file.read_text(encoding="utf-8")
    markdown = file.suffix != ".py"
    lines = enumerate(text.splitlines(), start=1) if markdown else python_strings(text)
    for line, chunk in lines:
        for path in cited_paths(chunk):
            yield Citation(file, line, path)


def repository_files() -> set[str]:
    """The repository's files (committed or not, but not ignored), relative to its root."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {name for name in listed if (REPO / name).exists()}


def folders_of(files: set[str]) -> set[str]:
    return {str(Path(name).parent) for name in files} | {
        str(parent) for name in files for parent in Path(name).parents
    }


def exists(citation: Citation, files: set[str], folders: set[str]) -> bool:
    """Whether the cited path (a file, a folder or a glob) is in the repository, from its root,
    from the citing file's folder or from the package's."""
    for base in ("", citation.file.parent.relative_to(REPO).as_posix(), PACKAGE):
        path = f"{base}/{citation.path}".strip("/").removeprefix("./")
        if "*" in path:
            if fnmatch.filter(files, path):
                return True
        elif path in files or path.rstrip("/") in folders:
            return True
    return False


def cited_files() -> list[Path]:
    patterns = (*MARKDOWN_DOCS, *PYTHON_SOURCES)
    return sorted({path for pattern in patterns for path in REPO.glob(pattern)})


@pytest.mark.parametrize(
    ("text", "cited"),
    [
        ("see STORAGE.md for the layout", ["STORAGE.md"]),
        ("the reference: `docs/contracts.md`.", ["docs/contracts.md"]),
        ("[tables](docs/tables.md#reading-the-tables)", ["docs/tables.md"]),
        (
            "hint: edit transforms/runs/steps.py, then tests/runs/",
            ["transforms/runs/steps.py", "tests/runs/"],
        ),
        ("https://example.org/docs/x.md and s3://bucket/docs/a.md", []),
        ("`<lake>/runs/latest.json`, lake/runs/latest.json, landing/people/D/", []),
        ("`<segment>/remove/<file>`, `docs/{name}.md`, membership/run_date=D/", []),
        ("segments.yaml, people.odcs.yaml, transforms.contracts.odcs", []),
        ("its key in `storage/lake.py`; `runs/latest.json`", ["storage/lake.py"]),
    ],
)
def test_citations_are_the_tokens_that_look_like_repo_paths(text: str, cited: list[str]):
    assert cited_paths(text) == cited


def test_an_f_string_is_read_whole_with_its_fields_as_placeholders():
    source = 'x = 1\nhint = f"read docs/{x}.md or docs/tables.md"\n'
    assert list(python_strings(source)) == [(2, "read docs/<>.md or docs/tables.md")]


def test_a_missing_file_is_not_found_and_a_relative_markdown_link_is():
    files = {"docs/tables.md", "docs/lifecycle.md", "README.md"}
    folders = folders_of(files)
    lifecycle = REPO / "docs" / "lifecycle.md"
    assert exists(Citation(lifecycle, 1, "tables.md"), files, folders)
    assert exists(Citation(lifecycle, 1, "docs/*.md"), files, folders)
    assert exists(Citation(lifecycle, 1, "docs/"), files, folders)
    assert not exists(Citation(lifecycle, 1, "STORAGE.md"), files, folders)
    assert not exists(Citation(lifecycle, 1, "docs/contracts.md"), files, folders)
    assert exists(Citation(lifecycle, 1, "tables.md"), {"transforms/tables.md"}, set())


def test_every_cited_repository_path_exists():
    files = repository_files()
    folders = folders_of(files)
    broken = [
        str(citation)
        for file in cited_files()
        for citation in citations_in(file)
        if not exists(citation, files, folders)
    ]
    assert broken == [], "cited paths that do not exist:\n" + "\n".join(broken)
