"""Manual segments from the inbox: uploads applied exactly once, in order (docs/lifecycle.md).

Layout of the inbox root:
- `<segment_id>/*.csv`: people to add; `<segment_id>/remove/*.csv`: people to remove;
  `<segment_id>/replace/*.csv`: the segment's whole membership (a replace-list: everyone not
  in it leaves, reason `replaced`); `<segment_id>/clear` (any content): remove everyone. An
  `action` column (add/remove) overrides the folder for its row (not in a replace-list).
  `.tsv`, `.txt` and Excel `.xlsx` files go where a `.csv` goes (`upload_files` reads them all).
- `_processed/<D>/<attempt>/<NNNN>/<original path>`: files claimed by an attempt of run D,
  numbered in the order they were applied, and `_processed/<D>/<attempt>/<NNNN>.errors.csv`
  beside a claim: its rows that named no known person, or several (line, value, problem);
  `_rejected/<D>/<file>` with `<file>.error.txt`: files that could not be applied.

Refusals are dated by the run that meets them: a run's own date, and for a look at the inbox
between runs (`check_uploads`) the date of the next run, the one after the latest commit.

A run claims files by moving them under its own attempt before it commits, so a crashed run
leaves them where no new upload can mix with them. It takes, in order:
1. files claimed by earlier attempts of its own date that no committed run lists: it takes them
   over where they are (no move), in their claim order. Whichever attempt of the date commits
   lists them, and only one can commit (the catalog swap), so a crash or a retry at any moment
   applies them exactly once, in the run of the date they were claimed for;
2. files claimed for another date by attempts that can no longer commit and that no committed
   run lists (an attempt started before the latest commit of the catalog read the catalog
   before that commit, so its swap must fail), moved under its own attempt; claims for another
   date by an attempt that may still commit are left alone;
3. new files by (last-modified, key).
On an object store a move is a copy then a delete; a file still in place with the same path and
bytes as a claim taken over in 1 is the source of a move cut short, and is deleted, not claimed
again.
Claims are numbered in the order they are applied, continuing after the numbers taken over, so
sorting by number gives the order again after any chain of takeovers. A rerun of a committed
date re-applies exactly the files its manifest lists, where they are. Every refusal filed under
`_rejected/<D>/` is reported by the run of D, whichever attempt filed it.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl

from transforms.config import Settings
from transforms.errors import ConcurrentRunError, MissingInputError, SegmentsError
from transforms.language.definitions import SEGMENT_ID, Segment
from transforms.manual.upload_files import (
    ACCEPTED,
    Table,
    UploadError,
    is_upload_file,
    is_workbook,
    read_upload,
)
from transforms.storage.records import Catalog, ManualUploads, Part, Refusal, UploadReport
from transforms.storage.roots import FileInfo, Root

PROCESSED, REJECTED = "_processed", "_rejected"
ID_COLUMNS = ("person_id", "id")
ACTIONS = {"add": "added", "remove": "removed"}
"""A row's action -> the reason its change records (a replace-list's rows are adds)."""
FOLDERS = ("remove", "replace")
MEMBERS = {"segment_id": pl.String, "person_id": pl.String}
REPORTED_IDS = 20  # unknown/ambiguous identifiers listed per file (all are in its errors file)
ERROR_SUFFIX, ERROR_HEADING = ".error.txt", " could not be applied:"
ERRORS_FILE_SUFFIX = ".errors.csv"
Refuse = Callable[[str, list[str], str], Refusal]
"""(key, problems, original path) -> the refusal filed (or, in a dry run, that would be)."""


@dataclass
class Upload:
    """One inbox file: where it is, and what its path says."""

    key: str
    segment_id: str
    action: str  # add | remove | replace | clear
    original: str  # its path relative to the inbox when it was dropped


@dataclass
class ManualResult:
    members: pl.DataFrame
    """(segment_id, person_id) of every manual segment after the run's uploads."""
    actions: pl.DataFrame
    """(segment_id, person_id, action): the last action of the run per person and segment."""
    applied: list[UploadReport]
    files: list[str]
    """Keys under `_processed/<D>/` of the files applied, in order."""
    rejected: list[Refusal] = field(default_factory=list)
    """The refusals filed for the run's date (`refusals`)."""

    def uploads(self) -> ManualUploads:
        """What the run's manifest records of its uploads."""
        return ManualUploads(applied=self.applied, rejected=self.rejected, files=self.files)


class InboxCheck(Part):
    """What a look at the inbox found (`check_uploads`): a dry run of the run of `day`."""

    day: date
    snapshot: str | None
    """The people snapshot the uploads were matched against (None: nothing ingested yet)."""
    checked: list[UploadReport]
    """The uploads the run of `day` would apply, in order, dry-run."""
    rejected: list[Refusal]
    """The uploads it would refuse (or that were moved to `_rejected/<day>/` already)."""
    members: dict[str, tuple[int, int]]
    """Manual segment -> (members before, members after the uploads)."""


def _classify(relative: str) -> tuple[str, str] | str:
    """(segment_id, action) from a path relative to the inbox, or why it is not an upload."""
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "the path has empty, '.' or '..' parts"
    segment_id = parts[0]
    if not SEGMENT_ID.match(segment_id):
        return f"'{segment_id}' is not a valid segment id"
    if len(parts) == 2 and parts[1] == "clear":
        return segment_id, "clear"
    if len(parts) == 2 or (len(parts) == 3 and parts[1] in FOLDERS):
        if not is_upload_file(parts[-1]):
            return f"'{parts[-1]}' is not a file type the inbox reads; upload {ACCEPTED} files"
        return segment_id, "add" if len(parts) == 2 else parts[1]
    return (
        "expected <segment>/<file>, <segment>/remove/<file>, <segment>/replace/<file> or"
        f" <segment>/clear, where a <file> is {ACCEPTED}"
    )


def _safe_name(relative: str) -> str:
    """A single path component for a refused file, whatever its key contained."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", relative.replace("/", "__")).strip(".") or "file"


def parse_upload(
    data: bytes, default_action: str, name: str = "the file"
) -> tuple[list[tuple[str, str, str, int]], list[str], str]:
    """Rows (identifier kind, value, action, line), notes, or UploadError with every problem.

    `data` is a CSV or an .xlsx (`upload_files`); `name` names the file in refusals. The rows
    of a replace-list are adds (the segment is emptied first)."""
    table = read_upload(data, name)
    header = [h.strip().lower() for h in table.header]
    kind, position, notes = _identifier(table, header)
    action_position = header.index("action") if "action" in header else None
    if action_position is not None and default_action == "replace":
        raise UploadError(
            [
                f"{table.unit} 1: a replace-list has no action column: every row is a member"
                " after the run; remove the column, or upload to <segment>/ and"
                " <segment>/remove/ instead"
            ]
        )
    if default_action == "replace":
        default_action = "add"
    rows, problems = [], []
    for line, row in table.rows:
        where = f"{table.unit} {line}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields, the header has {len(header)}")
            continue
        value = row[position].strip()
        if not value:
            problems.append(f"{where}: empty {kind}")
            continue
        action = default_action
        if action_position is not None and row[action_position].strip():
            given = row[action_position].strip().lower()
            if given not in ACTIONS:
                problems.append(f"{where}: action '{given}' is not add or remove")
                continue
            action = given
        rows.append((kind, value, action, line))
    problems += table.problems
    if problems:
        raise UploadError(problems)
    return rows, notes, kind


def _identifier(table: Table, header: list[str]) -> tuple[str, int, list[str]]:
    """The identifier kind, its column's position and the notes; UploadError when the header
    (`header`: its names trimmed, in lower case) has no identifier column."""
    notes = list(table.notes)
    id_column = next((c for c in ID_COLUMNS if c in header), None)
    if id_column is None and "email" not in header:
        found = ", ".join(f"'{h.strip()}'" for h in table.header if h.strip())
        fix = (
            f"the columns found ({table.layout}) are {found}: rename the one that holds the"
            " identifiers to"
            if found
            else "the header row has no column names: name the column that holds the identifiers"
        )
        raise UploadError(
            [f"{table.unit} 1: no identifier column; {fix} person_id (or id) or email"]
        )
    if id_column and "email" in header:
        notes.append(f"both {id_column} and email present: {id_column} was used, email ignored")
    kind = "person_id" if id_column else "email"
    return kind, header.index(id_column or "email"), notes


def resolve_people(
    rows,
    kind: str,
    people: pl.DataFrame | pl.LazyFrame,
    report: UploadReport,
    unmatched: list[tuple[int, str, str]] | None = None,
) -> list[tuple[str, str, int]]:
    """(person_id, action, line) of the rows naming exactly one known person; the others
    counted in `report` (the first REPORTED_IDS listed) and appended to `unmatched` as (line,
    value, problem). Of `people` (person_id, email of the snapshot: a lazy scan is read as a
    filtered one), only the people the rows name are read."""
    resolved, missed = [], []
    values = pl.Series("value", sorted({value for _, value, _, _ in rows}), dtype=pl.String)
    if kind == "person_id":
        named = people.lazy().filter(pl.col("person_id").is_in(values.implode()))
        known = set(named.select("person_id").collect().to_series().to_list())
        for _, value, action, line in rows:
            if value in known:
                resolved.append((value, action, line))
            else:
                missed.append((line, value, "unknown person_id"))
    else:
        lowered = values.to_frame().select("value", key=_email_key("value"))
        keys = dict(lowered.iter_rows())
        named = people.lazy().select("person_id", key=_email_key("email"))
        named = named.filter(pl.col("key").is_in(lowered["key"].implode()))
        by_email: dict[str, list[str]] = {}
        for pid, key in named.collect().iter_rows():
            by_email.setdefault(key, []).append(pid)
        for _, value, action, line in rows:
            matches = by_email.get(keys[value], [])
            if len(matches) == 1:
                resolved.append((matches[0], action, line))
            elif matches:
                missed.append((line, value, f"ambiguous email: {len(matches)} people have it"))
            else:
                missed.append((line, value, "unknown email"))
    unknown = [value for _, value, problem in missed if problem.startswith("unknown")]
    ambiguous = [value for _, value, problem in missed if problem.startswith("ambiguous")]
    report.unknown, report.unknown_count = unknown[:REPORTED_IDS], len(unknown)
    report.ambiguous_emails, report.ambiguous_count = ambiguous[:REPORTED_IDS], len(ambiguous)
    if unmatched is not None:
        unmatched += missed
    return resolved


def _email_key(column: str) -> pl.Expr:
    """An email as uploads match it to the snapshot's: without surrounding whitespace, in lower
    case."""
    return pl.col(column).str.strip_chars().str.to_lowercase()


CLAIMED = re.compile(
    rf"{PROCESSED}/(\d{{4}}-\d{{2}}-\d{{2}})/(\d{{8}}T\d{{12}}-[0-9a-f]{{6}})/(\d{{4}})/(.+)$"
)


def _pending(
    inbox: Root,
    day: date | None,
    applied_by: Callable[[str], set[str] | None],
    committed_by: str | None,
) -> tuple[list[str], list[str], list[FileInfo]]:
    """(claims of `day` to take over where they are; claims of other dates to carry over; new
    files), each in the order they are applied (module docstring).

    `applied_by(D)` is the set of files committed run D applied, or None if D has no committed
    run; `committed_by` is the attempt that made the latest commit."""
    own, carried = [], []
    for info in inbox.list_files(PROCESSED, recursive=True):
        match = CLAIMED.match(info.key)
        if not match or info.name.startswith("."):
            continue
        run_date, attempt, number, _ = match.groups()
        applied = applied_by(run_date)
        if applied is not None and info.key in applied:
            continue
        if day is not None and run_date == day.isoformat():
            own.append((number, attempt, info.key))
        elif committed_by is not None and attempt < committed_by:
            carried.append((run_date, number, attempt, info.key))
    new = [
        f
        for f in inbox.list_files("", recursive=True)
        if not f.key.startswith((f"{PROCESSED}/", f"{REJECTED}/")) and not f.name.startswith(".")
    ]
    new.sort(key=lambda f: (f.modified.timestamp() if f.modified else 0.0, f.key))
    return [key for *_, key in sorted(own)], [key for *_, key in sorted(carried)], new


def claim_number(key: str) -> int:
    """The position a claimed file was applied at (0 for a key that is not a claim)."""
    match = CLAIMED.match(key)
    return int(match.group(3)) if match else 0


def _original(key: str) -> str:
    match = CLAIMED.match(key)
    return match.group(4) if match else key


def _taken(key: str) -> ConcurrentRunError:
    return ConcurrentRunError(
        f"upload {key} was taken by another run while this one was applying it",
        hint="run again: the retry applies what is still pending",
    )


def _refusal_of(day: date, problems: list[str], original: str) -> Refusal:
    """The refusal of the upload first dropped at `original`, filed for the run of `day`."""
    target = f"{REJECTED}/{day.isoformat()}/{_safe_name(original)}"
    return Refusal(file=original, moved_to=target, problems=problems)


def rejecting(inbox: Root, day: date) -> Refuse:
    """Refusals that move the file to `_rejected/<D>/` beside an `.error.txt` listing its
    problems."""

    def reject(key: str, problems: list[str], original: str) -> Refusal:
        refusal = _refusal_of(day, problems, original)
        report = f"{original}{ERROR_HEADING}\n" + "".join(f"  {p}\n" for p in problems)
        inbox.write_bytes(f"{refusal.moved_to}{ERROR_SUFFIX}", report.encode())
        inbox.move(key, refusal.moved_to)
        return refusal

    return reject


def _refusal(kind: tuple[str, str] | str, segments: dict[str, Segment]) -> str | None:
    """Why an upload at this path cannot be applied, or None."""
    if isinstance(kind, str):
        return kind
    segment = segments.get(kind[0])
    if segment is None:
        return f"there is no segment '{kind[0]}' (definitions: segment_definitions/)"
    if not segment.is_manual:
        return f"'{kind[0]}' is data-driven: its members come from its `where`, never uploads"
    return None


def collect_uploads(
    inbox: Root,
    day: date,
    segments: dict[str, Segment],
    applied_by: Callable[[str], set[str] | None],
    rerun_files: list[str] | None,
    attempt: str | None,
    committed_by: str | None,
    refuse: Refuse,
) -> list[Upload]:
    """The uploads run `day` applies, in order, claimed under `_processed/<D>/` (module
    docstring). Files that cannot be applied are handed to `refuse`. With no `attempt` (a dry
    run) nothing is claimed, moved or deleted."""
    if rerun_files is not None:
        missing = [key for key in rerun_files if not inbox.exists(key)]
        if missing:
            raise MissingInputError(
                f"run {day} applied uploads that are no longer in {inbox.url}:"
                f" {', '.join(missing)}",
                hint="restore them from a backup (a rerun must re-apply exactly the same"
                " files), or check that --inbox is the inbox of this lake",
            )
        return [_upload(key) for key in rerun_files]
    own, carried, new = _pending(inbox, day, applied_by, committed_by)
    uploads = []
    number = max((claim_number(key) for key in own), default=0)
    for key in [*own, *carried, *(info.key for info in new)]:
        original = _original(key)
        if key not in own and _moved_already(inbox, key, original, own):
            if attempt is not None:
                inbox.delete([key])  # finish the move a killed attempt began
            continue
        if problem := _refusal(_classify(original), segments):
            refuse(key, [problem], original)
            continue
        target = key
        if key not in own and attempt is not None:  # claim it for this attempt
            number += 1
            target = f"{PROCESSED}/{day.isoformat()}/{attempt}/{number:04d}/{original}"
            try:
                inbox.move(key, target)
            except FileNotFoundError:
                raise _taken(key) from None
            if errors := _errors_file(key):  # a carried claim's errors were for another run
                inbox.delete([errors])
        uploads.append(_upload(target))
    return uploads


def _errors_file(key: str) -> str | None:
    """Where the rows a claimed upload could not apply are listed (None: `key` is no claim)."""
    match = CLAIMED.match(key)
    return key[: match.start(4) - 1] + ERRORS_FILE_SUFFIX if match else None


def _write_errors(inbox: Root, key: str, unmatched: list[tuple[int, str, str]]) -> str | None:
    """List the rows of the claim at `key` that named no known person, or several, in its
    errors file (removing a stale one when there are none); its key, if written."""
    errors = _errors_file(key)
    if errors is None:
        return None
    if not unmatched:
        inbox.delete([errors])
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["line", "value", "problem"])
    writer.writerows(unmatched)
    inbox.write_bytes(errors, buffer.getvalue().encode())
    return errors


def _moved_already(inbox: Root, key: str, original: str, own: list[str]) -> bool:
    """Whether the file at `key` is the source of a claim in `own` whose move was cut short.

    On an object store a move is a copy, then a delete: an attempt killed between the two
    leaves the file both where it was and claimed. The claim is taken over, so the source, the
    same path with the same bytes, must not be claimed a second time."""
    claims = [claim for claim in own if _original(claim) == original]
    if not claims:
        return False
    data = inbox.read_bytes(key, raw=True)
    return any(inbox.read_bytes(claim, raw=True) == data for claim in claims)


def _upload(key: str) -> Upload:
    """The upload at `key` (a claim, or a new file), as its original path describes it."""
    original = _original(key)
    segment_id, action = _classify(original)  # type: ignore[misc]
    return Upload(key, segment_id, action, original)


def refusals(inbox: Root, day: date) -> list[Refusal]:
    """Every upload refused under `_rejected/<D>/`, read back from its `.error.txt` (so a retry
    reports the refusals of the attempts before it too), by key."""
    found = []
    for info in inbox.list_files(f"{REJECTED}/{day.isoformat()}"):
        if not info.key.endswith(ERROR_SUFFIX):
            continue
        first, *lines = inbox.read_bytes(info.key).decode("utf-8").splitlines()
        found.append(
            Refusal(
                file=first.removesuffix(ERROR_HEADING),
                moved_to=info.key.removesuffix(ERROR_SUFFIX),
                problems=[line.strip() for line in lines if line.strip()],
            )
        )
    return found


def apply_uploads(
    inbox: Root,
    uploads: list[Upload],
    before: pl.DataFrame,
    people: pl.DataFrame | pl.LazyFrame,
    refuse: Refuse,
    dry_run: bool = False,
) -> ManualResult:
    """Apply uploads in order to the manual members `before` (segment_id, person_id).

    `people` has person_id and email of the run's snapshot (a lazy scan: only the people the
    uploads name are read, `resolve_people`); rows naming anyone else are
    reported and listed in the upload's errors file (not in a dry run). A file that cannot be
    parsed, or a replace-list that names nobody known, is handed to `refuse`."""
    state: dict[str, set[str]] = {}
    for sid, pid in before.select("segment_id", "person_id").iter_rows():
        state.setdefault(sid, set()).add(pid)
    last: dict[tuple[str, str], str] = {}
    applied, files, rejected = [], [], []
    for upload in uploads:
        report = UploadReport(
            file=upload.original, segment_id=upload.segment_id, action=upload.action
        )
        members = state.setdefault(upload.segment_id, set())
        if upload.action == "clear":
            _replace(members, set(), upload.segment_id, last, "cleared")
        else:
            try:
                resolved, unmatched = _read_people(inbox, upload, people, report)
            except UploadError as exc:
                rejected.append(refuse(upload.key, exc.problems, upload.original))
                continue
            if upload.action == "replace":
                _replace(members, {pid for pid, *_ in resolved}, upload.segment_id, last)
            else:
                for pid, action, _ in resolved:
                    (members.add if action == "add" else members.discard)(pid)
                    last[(upload.segment_id, pid)] = ACTIONS[action]
            report.applied = len(resolved)
            if not dry_run:
                report.errors_file = _write_errors(inbox, upload.key, unmatched)
        applied.append(report)
        files.append(upload.key)
    members_frame = pl.DataFrame(
        [(sid, pid) for sid, pids in sorted(state.items()) for pid in sorted(pids)],
        schema=MEMBERS,
        orient="row",
    )
    actions = pl.DataFrame(
        [(sid, pid, action) for (sid, pid), action in sorted(last.items())],
        schema={**MEMBERS, "action": pl.String},
        orient="row",
    )
    return ManualResult(members_frame, actions, applied, files, rejected)


def _read_people(
    inbox: Root, upload: Upload, people: pl.DataFrame | pl.LazyFrame, report: UploadReport
) -> tuple[list[tuple[str, str, int]], list[tuple[int, str, str]]]:
    """(the rows naming one known person, the others as (line, value, problem)) of an upload;
    UploadError when it cannot be applied."""
    try:
        data = inbox.read_bytes(upload.key)
    except FileNotFoundError:
        raise _taken(upload.key) from None
    rows, report.notes, kind = parse_upload(data, upload.action, upload.original)
    report.rows = len(rows)
    unmatched: list[tuple[int, str, str]] = []
    resolved = resolve_people(rows, kind, people, report, unmatched)
    if upload.action == "replace" and rows and not resolved:
        raise UploadError(
            [
                f"none of its {len(rows)} rows names a known person, so the segment was not"
                f" replaced: check that its {kind} column holds the identifiers"
            ]
        )
    return resolved, unmatched


def _replace(
    members: set[str],
    listed: set[str],
    segment_id: str,
    last: dict[tuple[str, str], str],
    reason: str = "replaced",
) -> None:
    """Make `listed` the whole membership: who leaves gets `reason`, who joins `added`."""
    for pid in members - listed:
        last[(segment_id, pid)] = reason
    for pid in listed - members:
        last[(segment_id, pid)] = "added"
    members.clear()
    members.update(listed)


def drop_upload(
    inbox: Root,
    segment: Segment,
    action: str,
    ids: list[str] | None = None,
    data: bytes | None = None,
    column: str = "person_id",
    source: str = "cli",
) -> str:
    """Write a correctly named upload into the inbox (what `segments manual` does); returns
    its key. `ids` become a one-column CSV; `data` is an existing CSV or .xlsx, checked
    first. The file is named by the time and `source` (the name of the file given)."""
    if not segment.is_manual:
        raise SegmentsError(
            f"'{segment.id}' is data-driven: its members come from its `where`",
            hint="manual uploads are for manual segments only",
        )
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{_safe_name(source)}"
    if action == "clear":
        key = f"{segment.id}/clear"
        inbox.write_bytes(key, b"")
        return key
    if data is None:
        values = [i.strip() for i in ids or [] if i.strip()]
        if not values:
            raise SegmentsError("no identifiers given", hint="pass --ids a,b,c or --file x.csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([column])
        writer.writerows([v] for v in values)
        data = buffer.getvalue().encode()
    try:
        parse_upload(data, action)
    except UploadError as exc:
        raise SegmentsError(
            "the file cannot be applied: " + "; ".join(exc.problems),
            hint="fix the file; it needs a header with person_id (or id) or email",
        ) from exc
    suffix = ".xlsx" if is_workbook(data) else ".csv"
    folder = f"{action}/" if action in FOLDERS else ""
    key = f"{segment.id}/{folder}{name}{suffix}"
    inbox.write_bytes(key, data)
    return key


def check_uploads(
    settings: Settings,
    day: date | None = None,
    *,
    move_refused: bool = False,
    not_before: date | None = None,
) -> InboxCheck:
    """A dry run of the inbox: what the run of `day` would apply, in order, and refuse, and
    the manual segments' sizes before and after. Nothing is claimed or applied.

    `day` defaults to the date after the latest committed run, or `not_before` if that is
    later (the inbox DAG passes the last complete day: runs missed meanwhile are not waited
    for). Uploads are matched against the people snapshot of `day`, or the latest ingested
    before it. With `move_refused` (what the inbox DAG does) a new file that can never be
    applied moves to `_rejected/<day>/` with its error report now, instead of at the run."""
    from transforms.language.definitions import load_segments
    from transforms.storage import lake
    from transforms.storage.catalog import read_catalog

    inbox = Root(settings.inbox, settings.storage_options)
    lake_root = Root(settings.lake, settings.storage_options)
    segments, _ = load_segments(settings.definitions)
    catalog = read_catalog(lake_root)
    day = _checked_day(day, catalog, not_before)
    snapshot = max((d for d in lake.ingested_days(lake_root) if d <= day), default=None)
    people = (
        lake.scan_people(lake_root, snapshot).select("person_id", "email").collect()
        if snapshot
        else pl.DataFrame(schema={"person_id": pl.String, "email": pl.String})
    )

    move = rejecting(inbox, day)
    rejected: list[Refusal] = []

    def refuse(key: str, problems: list[str], original: str) -> Refusal:
        if move_refused and not key.startswith(f"{PROCESSED}/"):
            refusal = move(key, problems, original)
        else:
            refusal = _refusal_of(day, problems, original)
        rejected.append(refusal)
        return refusal

    uploads = collect_uploads(
        inbox,
        day,
        segments,
        committed_uploads(lake_root, catalog),
        None,
        None,
        catalog.committed_by,
        refuse,
    )
    manual_ids = sorted(sid for sid, s in segments.items() if s.is_manual)
    before = previous_manual_members(lake_root, catalog, day, manual_ids)
    result = apply_uploads(inbox, uploads, before, people, refuse, dry_run=True)
    sizes_before = dict(before.group_by("segment_id").len().iter_rows())
    sizes_after = dict(result.members.group_by("segment_id").len().iter_rows())
    return InboxCheck(
        day=day,
        snapshot=snapshot.isoformat() if snapshot else None,
        checked=result.applied,
        rejected=rejected,
        members={
            sid: (sizes_before.get(sid, 0), sizes_after.get(sid, 0))
            for sid in manual_ids
            if sid in {u.segment_id for u in uploads}
        },
    )


def _checked_day(day: date | None, catalog: Catalog, not_before: date | None) -> date:
    """The run date a dry run is for; a committed date is refused (its rerun applies only the
    uploads it applied)."""
    day = day or max((d for d in (catalog.next_date, not_before) if d), default=None)
    if day is None:
        raise MissingInputError(
            "no run is committed yet, so which run applies the inbox's files is not known",
            hint="give the date of the run to check: --date YYYY-MM-DD",
        )
    if day.isoformat() in catalog.runs:
        raise SegmentsError(
            f"run {day} is committed: a rerun re-applies exactly the uploads it applied, and"
            f" the inbox's files wait for the run of {catalog.next_date}",
            hint="leave out --date to check the next run",
        )
    return day


def committed_uploads(lake_root: Root, catalog: Catalog) -> Callable[[str], set[str] | None]:
    """`applied_by` of `collect_uploads`: the files committed run D (ISO) applied, or None when
    D has no committed run."""
    from transforms.storage.catalog import read_manifest

    @functools.cache
    def applied_by(run_date: str) -> set[str] | None:
        manifest = read_manifest(lake_root, catalog, date.fromisoformat(run_date))
        return set(manifest.manual.files) if manifest else None

    return applied_by


def previous_manual_members(
    lake_root: Root, catalog: Catalog, day: date, manual_ids: list[str]
) -> pl.DataFrame:
    """(segment_id, person_id) of the manual segments in the latest committed run before
    `day`: what its uploads apply to."""
    from transforms.storage.catalog import members_before

    return members_before(lake_root, catalog, day, manual_ids, MEMBERS)
