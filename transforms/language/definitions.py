"""Segment definition files: one YAML per segment, loaded and checked as a whole folder.

The segment id is the file's stem (`^[a-z][a-z0-9_]{0,62}$`). Problems are collected across all
files (bad ids, unknown keys, missing or forbidden `where`, duplicate ids, YAML errors) before
anything is reported; the predicate itself is checked by `transforms.language.check`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from transforms.errors import DefinitionError
from transforms.storage.records import DefinitionChanges

SEGMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SUFFIXES = (".yaml", ".yml")
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (its wheels are): a run reads every
definition file in each of its steps, about 10 times faster than with the pure-Python one."""


class SegmentFile(BaseModel):
    """The keys a definition file may have (docs/segment_language.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["data_driven", "manual"]
    description: str | None = None
    owner: str | None = None
    tags: list[str] = []
    where: str | None = None

    @field_validator("where", mode="before")
    @classmethod
    def _scalar_where(cls, value: object) -> object:
        """YAML reads `where: TRUE` or `where: 1` as a bool or number: keep them as SQL."""
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _where_matches_type(self) -> SegmentFile:
        if self.type == "data_driven" and not (self.where or "").strip():
            raise ValueError("a data_driven segment needs a `where` predicate")
        if self.type == "manual" and self.where is not None:
            raise ValueError(
                "a manual segment cannot have `where`: its members come only from uploads"
            )
        return self


@dataclass(frozen=True)
class Segment:
    """A loaded definition: its id, where it came from, and where its predicate starts."""

    id: str
    file: str
    spec: SegmentFile
    where_line: int = 1
    """1-based line of the file on which the predicate text starts."""
    where_column: int = 1
    """1-based column of the predicate's first character on that line."""
    where_block: bool = False
    """True for a block scalar (`where: |`): later lines keep their own columns."""

    @property
    def is_manual(self) -> bool:
        return self.spec.type == "manual"

    def position(self, offset: int) -> tuple[int, int]:
        """File line and column of a character offset into the predicate text."""
        text = self.spec.where or ""
        before = text[:offset]
        line_in = before.count("\n")
        col_in = offset - (before.rfind("\n") + 1)
        if line_in == 0:
            return self.where_line, self.where_column + col_in
        return self.where_line + line_in, (self.where_column if self.where_block else 1) + col_in

    def content_hash(self) -> str:
        """Hash of what the definition means (type and predicate), not of comments or names."""
        where = " ".join((self.spec.where or "").split())
        return hashlib.sha256(f"{self.spec.type}\n{where}".encode()).hexdigest()[:16]


def _where_position(text: str) -> tuple[int, int, bool]:
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        return 1, 1, False
    if not isinstance(root, yaml.MappingNode):
        return 1, 1, False
    for key, value in root.value:
        if getattr(key, "value", None) == "where" and isinstance(value, yaml.ScalarNode):
            if value.style in ("|", ">"):
                body = text.splitlines()[value.start_mark.line + 1 :]
                first = next((line for line in body if line.strip()), "")
                indent = len(first) - len(first.lstrip(" "))
                return value.start_mark.line + 2, indent + 1, True
            quote = 1 if value.style in ("'", '"') else 0
            return value.start_mark.line + 1, value.start_mark.column + 1 + quote, False
    return 1, 1, False


TYPES = ("data_driven", "manual")


def _did_you_mean(value: object, choices: tuple[str, ...], quote: str) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f"did you mean {quote}{close[0]}{quote}? " if close else ""


def _key_lines(text: str) -> dict[str, int]:
    """The 1-based line of each top-level key of a YAML mapping."""
    root = yaml.compose(text, Loader=YAML_LOADER)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in root.value}


def _problems(exc: ValidationError, file: str, text: str) -> list[DefinitionError]:
    problems = []
    lines = _key_lines(text)
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        line = lines.get(str(err["loc"][0])) if err["loc"] else None
        if err["type"] == "extra_forbidden":
            keys = tuple(SegmentFile.model_fields)
            problems.append(
                DefinitionError(
                    f"unknown key `{field}`",
                    file=file,
                    line=line,
                    hint=_did_you_mean(field, keys, "`") + "allowed keys: " + ", ".join(keys),
                )
            )
        elif err["type"] == "missing":
            problems.append(
                DefinitionError(
                    f"missing required key `{field}`", file=file, hint=f"add `{field}:`"
                )
            )
        elif field == "type":
            problems.append(
                DefinitionError(
                    f"`type`: {err['input']!r} is not a segment type",
                    file=file,
                    line=line,
                    hint=_did_you_mean(err["input"], TYPES, "'") + "write data_driven or manual",
                )
            )
        else:
            message = err["msg"].removeprefix("Value error, ")
            where = f"`{field}`: " if field else ""
            problems.append(DefinitionError(f"{where}{message}", file=file, line=line))
    return problems


def _id_problem(segment_id: str, file: str) -> DefinitionError:
    suggestion = re.sub(r"[^a-z0-9_]+", "_", segment_id.lower()).strip("_")
    return DefinitionError(
        f"'{segment_id}' is not a valid segment id",
        file=file,
        hint="name the file with lower-case letters, digits and _ only, starting with"
        f" a letter, at most 63 characters (e.g. {suggestion or 'my_segment'}.yaml)",
    )


def _predicate_only(raw: dict[str, object]) -> SegmentFile | None:
    """The `where` of a file refused for its other keys, to check it all the same (as a
    data-driven segment); None when it has no predicate to check."""
    if raw.get("type") == "manual":
        return None
    try:
        return SegmentFile(name="", type="data_driven", where=raw.get("where"))
    except ValidationError:
        return None


def _read(path: Path) -> tuple[Segment | None, list[DefinitionError]]:
    """One file's definition and its problems. A definition returned with problems is only
    there to have its predicate checked too: the file is refused."""
    file, segment_id = str(path), path.stem
    problems = [] if SEGMENT_ID.match(segment_id) else [_id_problem(segment_id, file)]
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = DefinitionError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        )
        return None, [*problems, problem]
    if not isinstance(raw, dict):
        problem = DefinitionError(
            "expected a mapping with name, type and where",
            file=file,
            hint="see segment_definitions/README.md for the file format",
        )
        return None, [*problems, problem]
    try:
        spec: SegmentFile | None = SegmentFile.model_validate(raw)
    except ValidationError as exc:
        problems += _problems(exc, file, text)
        spec = _predicate_only(raw)
    if spec is None:
        return None, problems
    line, column, block = _where_position(text)
    return Segment(segment_id, file, spec, line, column, block), problems


@dataclass(frozen=True)
class Folder:
    """What a definitions folder holds."""

    segments: dict[str, Segment]
    """The definitions that load, by id."""
    problems: list[DefinitionError]
    """Every problem of every file, but those of the predicates (`transforms.language.checked`
    finds them)."""
    to_check: dict[str, Segment]
    """`segments`, and the refused files whose predicate can still be checked: what
    `segments validate` checks, so that one pass finds every problem."""


def read_folder(folder: str | Path) -> Folder:
    """Every definition in `folder`, and every problem found in any of its files."""
    root = Path(folder)
    if not root.is_dir():
        missing = DefinitionError(
            "the definitions folder does not exist",
            file=str(root),
            hint="create it, or point --definitions / SEGMENTS_DEFINITIONS at it",
        )
        return Folder({}, [missing], {})
    paths = sorted(p for p in root.iterdir() if p.suffix in SUFFIXES and p.is_file())
    segments: dict[str, Segment] = {}
    to_check: dict[str, Segment] = {}
    problems: list[DefinitionError] = []
    for path in paths:
        segment, found = _read(path)
        problems += found
        if segment is None:
            continue
        if segment.id in to_check:
            problems.append(_duplicate(segment, to_check[segment.id]))
            continue
        to_check[segment.id] = segment
        if not found:
            segments[segment.id] = segment
    return Folder(segments, problems, to_check)


def _duplicate(segment: Segment, first: Segment) -> DefinitionError:
    return DefinitionError(
        f"duplicate segment id '{segment.id}' (also defined in {first.file})",
        file=segment.file,
        hint="segment ids come from file names: keep one of the two files",
    )


def load_segments(folder: str | Path) -> tuple[dict[str, Segment], list[DefinitionError]]:
    """Every definition in `folder` that loads, by id, and every problem found in any file."""
    found = read_folder(folder)
    return found.segments, found.problems


def definition_hashes(segments: dict[str, Segment]) -> dict[str, str]:
    return {sid: segment.content_hash() for sid, segment in sorted(segments.items())}


def definition_changes(before: dict[str, str], after: dict[str, str]) -> DefinitionChanges:
    """Segment ids that are new, changed or deleted between two sets of definition hashes."""
    return DefinitionChanges(
        new=sorted(set(after) - set(before)),
        changed=sorted(s for s in set(after) & set(before) if after[s] != before[s]),
        deleted=sorted(set(before) - set(after)),
    )
