"""Reading what marketers upload: CSV in any common delimiter and encoding, Excel workbooks,
the identifier column found whatever its case, and refusals that say what to do."""

from __future__ import annotations

import pytest

from tests.manual.files import workbook
from transforms.manual.inbox import UploadError, _classify, parse_upload


def values(data: bytes, name: str = "vip/list.csv") -> list[tuple[str, str, str, int]]:
    rows, _, _ = parse_upload(data, "add", name)
    return rows


def refusal(data: bytes, name: str = "vip/list.csv") -> str:
    with pytest.raises(UploadError) as raised:
        parse_upload(data, "add", name)
    return "\n".join(raised.value.problems)


# --- delimiters -------------------------------------------------------------------------------
def test_a_semicolon_file_from_excel_with_bom_and_crlf_is_read():
    data = "\ufeffemail;first name\r\nann@example.com;Ann\r\nbob@example.com;Bob\r\n".encode()
    assert values(data) == [
        ("email", "ann@example.com", "add", 2),
        ("email", "bob@example.com", "add", 3),
    ]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_every_common_delimiter_is_found_from_the_header(delimiter):
    data = delimiter.join(["name", "person_id", "action"]) + "\n"
    data += delimiter.join(["Doe", "00123", "remove"]) + "\n"
    assert values(data.encode()) == [("person_id", "00123", "remove", 2)]


def test_a_delimiter_inside_quotes_is_not_taken_for_the_separator():
    data = b'"last, first";email\n"Roe, Bob";bob@example.com\n'
    assert values(data) == [("email", "bob@example.com", "add", 2)]


def test_ids_stay_text():
    assert values(b"person_id;score\n00123;1.50\n1e5;2\n") == [
        ("person_id", "00123", "add", 2),
        ("person_id", "1e5", "add", 3),
    ]


def test_a_ragged_line_is_counted_with_the_sniffed_delimiter():
    assert "line 3: 3 fields, the header has 2" in refusal(b"email;name\na@x.com;A\nb;B;C\n")


# --- encodings --------------------------------------------------------------------------------
def test_excel_unicode_text_utf16_with_bom_is_read():
    data = "person_id\tname\r\n00123\tZoë\r\n7\tĐorđe\r\n".encode("utf-16")
    assert data.startswith((b"\xff\xfe", b"\xfe\xff"))
    assert values(data, "vip/list.txt") == [
        ("person_id", "00123", "add", 2),
        ("person_id", "7", "add", 3),
    ]
    big_endian = b"\xfe\xff" + "person_id\n42\n".encode("utf-16-be")
    assert values(big_endian) == [("person_id", "42", "add", 2)]


def test_a_latin1_file_is_read_and_the_report_says_how():
    data = "email;name\nrené@example.com;René Müller\n".encode("latin-1")
    rows, notes, kind = parse_upload(data, "add", "vip/list.csv")
    assert (kind, rows) == ("email", [("email", "rené@example.com", "add", 2)])
    assert any("Windows-1252" in note and "CSV UTF-8" in note for note in notes)


def test_a_windows_1252_file_is_read():
    data = "person_id;note\nx1;5 € – “ok”\n".encode("cp1252")
    assert values(data) == [("person_id", "x1", "add", 2)]


def test_utf8_is_preferred_and_needs_no_note():
    rows, notes, _ = parse_upload("email\nrené@example.com\n".encode(), "add", "vip/a.csv")
    assert rows == [("email", "rené@example.com", "add", 2)] and notes == []


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00\x01\x02\x03\x81\x8d\x90",
        bytes(range(256)),
        "person_id\na\n".encode("utf-16-le"),  # UTF-16 without its BOM
        b"\xef\xbb\xbfperson_id\n\xff\xfe\n",  # a BOM that says UTF-8, bytes that are not
    ],
    ids=["pdf", "binary", "utf16-without-bom", "bad-utf8-after-bom"],
)
def test_a_file_in_no_known_encoding_is_refused_with_what_to_do(data):
    message = refusal(data, "vip/scan.csv")
    assert "vip/scan.csv" in message
    assert "not text in a known encoding" in message
    assert 'save it as "CSV UTF-8' in message


# --- Excel workbooks --------------------------------------------------------------------------
def test_an_xlsx_with_numeric_looking_ids_and_an_email_header():
    data = workbook(["Email", "Person_ID "], ["ANN@example.com", 123], ["bob@example.com", "00123"])
    rows, notes, kind = parse_upload(data, "add", "vip/list.xlsx")
    assert kind == "person_id"
    assert rows == [("person_id", "123", "add", 2), ("person_id", "00123", "add", 3)]
    assert notes == ["both person_id and email present: person_id was used, email ignored"]
    data = workbook(["Name", "Email"], ["Ann", "ann@example.com"], [None, None], ["Bob", 7.0])
    assert values(data, "vip/list.xlsx") == [
        ("email", "ann@example.com", "add", 2),
        ("email", "7", "add", 4),
    ]


def test_an_xlsx_reads_only_its_first_sheet_and_every_cell_as_text():
    data = workbook([" ID ", "score", "action"], [1.0, 0.5, "add"], [20, True, "remove"], sheets=2)
    assert values(data, "vip/list.xlsx") == [
        ("person_id", "1", "add", 2),
        ("person_id", "20", "remove", 3),
    ]


def test_problems_in_a_workbook_name_its_rows():
    data = workbook(["email", "action"], ["a@x.com", "promote"], [None, "add"])
    message = refusal(data, "vip/list.xlsx")
    assert "row 2: action 'promote' is not add or remove" in message
    assert "row 3: empty email" in message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (workbook(), "the first sheet of vip/list.xlsx is empty"),
        (workbook()[:300], "vip/list.xlsx is not a readable Excel workbook"),
        (b"PK\x03\x04" + bytes(range(256)), "vip/list.xlsx is not a readable Excel workbook"),
    ],
    ids=["empty", "truncated", "not-a-workbook"],
)
def test_an_empty_or_unreadable_workbook_is_refused(data, problem):
    assert problem in refusal(data, "vip/list.xlsx")


# --- the identifier column --------------------------------------------------------------------
@pytest.mark.parametrize("header", ["Email", " EMAIL ", "eMail"])
def test_the_identifier_column_is_found_whatever_its_case_and_spaces(header):
    data = f"{header};Name\r\nann@example.com;Ann\r\n".encode()
    assert values(data) == [("email", "ann@example.com", "add", 2)]


def test_an_id_column_with_spaces_is_a_person_id():
    assert values(b" ID |name\n00123|Ann\n") == [("person_id", "00123", "add", 2)]


def test_without_an_identifier_column_the_message_names_the_columns_and_the_fix():
    message = refusal(b"name;first name\nDoe;Ann\n")
    assert message.startswith("line 1: no identifier column")
    assert "'name', 'first name'" in message
    assert "rename" in message and "person_id" in message and "email" in message


# --- file types -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["list.csv", "LIST.XLSX", "list.tsv", "list.txt"])
def test_csv_text_and_excel_files_are_uploads(name):
    assert _classify(f"vip/{name}") == ("vip", "add")
    assert _classify(f"vip/remove/{name}") == ("vip", "remove")


@pytest.mark.parametrize("relative", ["vip/brief.pdf", "vip/old.xls", "vip/remove/list"])
def test_an_unsupported_file_type_is_refused_naming_the_accepted_ones(relative):
    problem = _classify(relative)
    assert isinstance(problem, str)
    assert relative.rsplit("/", 1)[-1] in problem
    assert "CSV" in problem and "Excel .xlsx" in problem
