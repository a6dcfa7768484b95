"""Reading an upload file into rows of text, whatever tool saved it.

- CSV text (`.csv`, `.tsv`, `.txt`): the delimiter (comma, semicolon, tab or pipe) is the one
  that splits the header into the most columns; the encoding is UTF-8 (with or without a BOM),
  UTF-16 with its BOM (Excel's "Unicode text"), or else Windows-1252/Latin-1 when the bytes read
  cleanly as such text, which the report notes.
- Excel workbooks (`.xlsx`): the first sheet, with Polars' calamine reader.
Every cell is text: an id is never read as a number (`00123` stays `00123`, a cell holding 123
is `123`). What the columns mean is the inbox's business (`inbox.parse_upload`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field

import polars as pl

from transforms.errors import SegmentsError

TEXT_SUFFIXES, WORKBOOK_SUFFIXES = (".csv", ".tsv", ".txt"), (".xlsx",)
ACCEPTED = "CSV (.csv, .tsv, .txt) or Excel .xlsx"
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
WORKBOOK_MAGIC = b"PK\x03\x04"  # an .xlsx is a zip archive
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # never in a text export
SAVE_AS = 'in Excel, save it as "CSV UTF-8 (Comma delimited)"'
GUESSED = (
    "not UTF-8: read as Windows-1252 (Latin-1) text; check accented names, or save the file"
    ' as "CSV UTF-8" in Excel'
)


class UploadError(SegmentsError):
    """An upload file cannot be applied; `problems` says why, line by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Table:
    """An upload's cells as text."""

    header: list[str]
    rows: list[tuple[int, list[str]]]
    """(number, cells) of every row after the header: its line (CSV) or row (Excel)."""
    unit: str = "line"
    """What the numbers count: `line` of a text file or `row` of a sheet."""
    layout: str = ""
    """Where its columns were found, for messages about them (`semicolon-separated`)."""
    problems: list[str] = field(default_factory=list)
    """Rows that could not be read (the rows before them are in `rows`)."""
    notes: list[str] = field(default_factory=list)


def is_upload_file(name: str) -> bool:
    """Whether a file of this name is one the inbox reads."""
    return name.lower().endswith(TEXT_SUFFIXES + WORKBOOK_SUFFIXES)


def is_workbook(data: bytes) -> bool:
    """Whether the bytes are a workbook rather than text (the content decides, not the name)."""
    return data.startswith(WORKBOOK_MAGIC)


def read_upload(data: bytes, name: str) -> Table:
    """The cells of the upload `name`, or UploadError when they cannot be read at all."""
    return read_workbook(data, name) if is_workbook(data) else read_text(data, name)


def decode(data: bytes, name: str) -> tuple[str, list[str]]:
    """The text of a CSV, and a note when its encoding was a guess."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    elif data.startswith(codecs.BOM_UTF8):
        encodings = ["utf-8-sig"]
    else:
        encodings = ["utf-8", "cp1252"]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not CONTROL.search(text):
            return text, [] if encoding != "cp1252" else [GUESSED]
    raise UploadError(
        [
            f"{name} is not text in a known encoding (UTF-8, UTF-16 or Windows-1252), nor an"
            f" .xlsx workbook; {SAVE_AS}"
        ]
    )


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header into the most columns (a comma on a tie)."""

    def width(delimiter: str) -> int:
        try:
            return len(next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)))
        except (csv.Error, StopIteration):
            return 0

    return max(DELIMITERS, key=width)


def read_text(data: bytes, name: str) -> Table:
    """The rows of a CSV in any common delimiter and encoding."""
    text, notes = decode(data, name)
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UploadError(["line 1: the file is empty; it needs a header row"]) from None
    except csv.Error as exc:
        raise UploadError([f"line 1: not valid CSV ({exc})"]) from None
    table = Table(header, [], layout=f"{DELIMITERS[delimiter]}-separated", notes=notes)
    try:
        for row in reader:
            table.rows.append((reader.line_num, row))
    except csv.Error as exc:
        table.problems.append(f"line {reader.line_num}: not valid CSV ({exc})")
    return table


def read_workbook(data: bytes, name: str) -> Table:
    """The rows of a workbook's first sheet, every cell as text (empty cells are "")."""
    from fastexcel import FastExcelError

    try:
        sheet = pl.read_excel(
            data,
            engine="calamine",
            sheet_id=1,
            has_header=False,
            infer_schema_length=0,  # every column as text
            drop_empty_rows=False,  # keep the row numbers
            raise_if_empty=False,
        )
    except (FastExcelError, pl.exceptions.PolarsError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UploadError(
            [
                f"{name} is not a readable Excel workbook ({reason}); open it in Excel and save"
                " it again as .xlsx, or as CSV UTF-8"
            ]
        ) from None
    if sheet.height == 0:
        raise UploadError([f"the first sheet of {name} is empty; it needs a header row"])
    header, *rows = ([cell or "" for cell in row] for row in sheet.iter_rows())
    return Table(header, list(enumerate(rows, start=2)), unit="row", layout="on the first sheet")
