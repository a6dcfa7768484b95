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
from datetime import date
from pathlib import Path

import pytest

from transforms.config import Settings
from transforms.manual import inbox
from transforms.runs import iceberg
from transforms.runs.staging import STAGED_AS, StagedFrame, Staging
from transforms.storage import lake
from transforms.storage.roots import Root

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
MARKDOWN_DOCS = (
    "README.md",
    "docs/*.md",
    "benchmarks/README.md",
    "segment_definitions/README.md",
    "transforms/**/*.md",
)
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
    return {parent.as_posix() for name in files for parent in Path(name).parents}


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
    citations = [citation for file in cited_files() for citation in citations_in(file)]
    readme_links = {c.path for c in citations if c.file == REPO / "README.md"}
    assert "docs/lifecycle.md" in readme_links  # the extraction does find citations
    broken = [str(c) for c in citations if not exists(c, files, folders)]
    assert broken == [], "cited paths that do not exist:\n" + "\n".join(broken)


STORAGE_DOC = REPO / "docs" / "storage.md"
ATTEMPT = "<attempt>"
RUN_DAY, INGEST_DAY, BUCKET_DAY = date(2026, 3, 31), date(2026, 3, 30), date(2026, 3, 1)
SPELLED = {RUN_DAY: "D", INGEST_DAY: "I", BUCKET_DAY: "X"}
"""The dates in a key the code builds, as docs/storage.md spells them."""


def spelled(key: str) -> str:
    for day, letter in SPELLED.items():
        key = key.replace(day.isoformat(), letter)
    return key


def lake_keys() -> list[str]:
    """Every kind of key the pipeline writes in the lake, from the code that names them."""
    partitioned = [t for t in lake.PARTITION_COLUMNS if t != lake.STATE_TABLES[1]]
    partial = lake.partial_file(RUN_DAY, INGEST_DAY, BUCKET_DAY, ATTEMPT, 0)
    staging = Staging(Root("/lake"), RUN_DAY, ATTEMPT)
    return [
        *(lake.data_file(table, RUN_DAY, ATTEMPT) for table in partitioned),
        *(
            lake.data_part(table, RUN_DAY, ATTEMPT, 0).replace("-00000.", "-<NNNNN>.")
            for table in ("membership", "changes")
        ),
        *(lake.quarantine_file(table, RUN_DAY, ATTEMPT) for table in ("people", "events")),
        partial.rsplit("/", 1)[0] + "/",
        lake.CATALOG,
        lake.manifest_path(RUN_DAY, ATTEMPT),
        lake.report_path(RUN_DAY, ATTEMPT),
        lake.ingest_manifest(RUN_DAY),
        lake.validation_file(RUN_DAY, ATTEMPT, "<table>"),
        lake.staging("ingest", RUN_DAY, ATTEMPT) + "/",
        staging.folder + "/",
        *(key.removeprefix(staging.folder + "/") + "/" for key in (staging.inputs, staging.ingest)),
        *(staging.key(kind).rsplit("/", 1)[1] for kind in STAGED_AS),
        *(f"{frame}.parquet" for frame in StagedFrame),
        staging.parts_folder("<name>").removeprefix(staging.folder + "/") + "/",
    ]


def inbox_names() -> list[str]:
    """Every kind of name the inbox holds, from the code that reads and writes them."""
    folders = [f"<segment>/{folder}/<file>" for folder in inbox.FOLDERS]
    processed = f"{inbox.PROCESSED}/D/{ATTEMPT}/<NNNN>"
    return [
        "<segment>/<file>",
        *folders,
        "<segment>/clear",
        f"{processed}/<original path>",
        f"{processed}{inbox.ERRORS_FILE_SUFFIX}",
        f"{inbox.REJECTED}/D/<file>",
        f"<file>{inbox.ERROR_SUFFIX}",
    ]


def iceberg_names() -> list[str]:
    """The embedded Iceberg catalog of a local lake: its database and warehouse folder."""
    settings = Settings(lake="/lake")
    properties = iceberg.catalog_properties(settings)
    return [
        f"<lake>/{properties['uri'].rsplit('/', 1)[1]}",
        f"<lake>/{properties['warehouse'].rsplit('/', 1)[1]}/",
    ]


def test_the_storage_reference_names_every_kind_of_file_the_code_writes():
    text = STORAGE_DOC.read_text(encoding="utf-8") if STORAGE_DOC.exists() else ""
    names = [spelled(key) for key in lake_keys()] + inbox_names() + iceberg_names()
    assert [name for name in names if f"`{name}`" not in text] == []
