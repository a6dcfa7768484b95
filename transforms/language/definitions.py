"""Segment definition files: one YAML per segment, loaded and checked as a whole folder.

The segment id is the file's stem (`^[a-z][a-z0-9_]{0,62}$`). Problems are collected across all
files (bad ids, unknown keys, missing or forbidden `where`, duplicate ids, YAML errors) before
anything is reported; the predicate itself is checked by `transforms.language.check`.
"""

from __future__ import annotations

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
        root = yaml.compose(text)
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


def _problems(exc: ValidationError, file: str) -> list[DefinitionError]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(
                DefinitionError(
                    f"unknown key `{field}`",
                    file=file,
                    hint="allowed keys: name, type, description, owner, tags, where",
                )
            )
        elif err["type"] == "missing":
            problems.append(
                DefinitionError(
                    f"missing required key `{field}`", file=file, hint=f"add `{field}:`"
                )
            )
        else:
            message = err["msg"].removeprefix("Value error, ")
            where = f"`{field}`: " if field else ""
            problems.append(DefinitionError(f"{where}{message}", file=file))
    return problems


def _load(paths: list[Path]) -> tuple[list[Segment], list[DefinitionError]]:
    segments: list[Segment] = []
    problems: list[DefinitionError] = []
    for path in paths:
        file = str(path)
        segment_id = path.stem
        if not SEGMENT_ID.match(segment_id):
            suggestion = re.sub(r"[^a-z0-9_]+", "_", segment_id.lower()).strip("_")
            problems.append(
                DefinitionError(
                    f"'{segment_id}' is not a valid segment id",
                    file=file,
                    hint="name the file with lower-case letters, digits and _ only, starting with"
                    f" a letter, at most 63 characters (e.g. {suggestion or 'my_segment'}.yaml)",
                )
            )
            continue
        text = path.read_text(encoding="utf-8")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(
                DefinitionError(
                    f"not valid YAML: {getattr(exc, 'problem', exc)}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            )
            continue
        if not isinstance(raw, dict):
            problems.append(
                DefinitionError(
                    "expected a mapping with name, type and where",
                    file=file,
                    hint="see segment_definitions/README.md for the file format",
                )
            )
            continue
        try:
            spec = SegmentFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(exc, file))
            continue
        line, column, block = _where_position(text)
        segments.append(Segment(segment_id, file, spec, line, column, block))
    return segments, problems


def load_segments(folder: str | Path) -> tuple[dict[str, Segment], list[DefinitionError]]:
    """Every definition in `folder` by id, and every problem found in any of them."""
    root = Path(folder)
    if not root.is_dir():
        return {}, [
            DefinitionError(
                "the definitions folder does not exist",
                file=str(root),
                hint="create it, or point --definitions / SEGMENTS_DEFINITIONS at it",
            )
        ]
    paths = sorted(p for p in root.iterdir() if p.suffix in SUFFIXES and p.is_file())
    loaded, problems = _load(paths)
    segments: dict[str, Segment] = {}
    for segment in loaded:
        if segment.id in segments:
            problems.append(
                DefinitionError(
                    f"duplicate segment id '{segment.id}' (also defined in"
                    f" {segments[segment.id].file})",
                    file=segment.file,
                    hint="segment ids come from file names: keep one of the two files",
                )
            )
            continue
        segments[segment.id] = segment
    return segments, problems


def definition_hashes(segments: dict[str, Segment]) -> dict[str, str]:
    return {sid: segment.content_hash() for sid, segment in sorted(segments.items())}


def definition_changes(before: dict[str, str], after: dict[str, str]) -> DefinitionChanges:
    """Segment ids that are new, changed or deleted between two sets of definition hashes."""
    return DefinitionChanges(
        new=sorted(set(after) - set(before)),
        changed=sorted(s for s in set(after) & set(before) if after[s] != before[s]),
        deleted=sorted(set(before) - set(after)),
    )
