"""Upload files as marketers' tools write them, for the inbox tests."""

from __future__ import annotations

import io

import xlsxwriter


def workbook(*rows: list[object], sheets: int = 1) -> bytes:
    """An .xlsx written by a real writer: `rows` on the first sheet (None leaves a cell empty),
    then `sheets - 1` more sheets with a cell each."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    first = book.add_worksheet()
    for number, row in enumerate(rows):
        for column, cell in enumerate(row):
            if cell is not None:
                first.write(number, column, cell)
    for _ in range(sheets - 1):
        book.add_worksheet().write(0, 0, "ignored")
    book.close()
    return buffer.getvalue()
