"""Manual segments from the inbox: every upload case, exactly once, in order, nothing lost."""

from __future__ import annotations

import json
import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.manual.files import workbook
from tests.support.workspace import PEOPLE_HEADER, land
from transforms.cli.app import app
from transforms.errors import ConcurrentRunError, DefinitionErrors, MissingInputError
from transforms.manual.inbox import _classify
from transforms.runs.steps import run
from transforms.storage.catalog import read_catalog, read_manifest, read_table
from transforms.storage.roots import Root

D1 = date(2026, 3, 30)
D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)
EMAILS = {
    "a": "Ann@Example.com",
    "b": "bob@example.com",
    "c": "shared@example.com",
    "d": "shared@example.com",
    "e": "eve@example.com",
}


@pytest.fixture
def ws(settings, tmp_path: Path):
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "vip.yaml").write_text("name: VIP\ntype: manual\n")
    (definitions / "beta.yaml").write_text("name: Beta\ntype: manual\n")
    (definitions / "pro.yaml").write_text("name: Pro\ntype: data_driven\nwhere: plan = 'pro'\n")
    (definitions / "vip_pro.yaml").write_text(
        "name: VIP pro\ntype: data_driven\nwhere: in_segment('vip') AND plan = 'pro'\n"
    )
    for day in (D1, D2, D3):
        snapshot = "".join(
            f"{pid},{email},A,{'pro' if pid == 'a' else 'free'},US,30,1,true,"
            "2026-01-01T00:00:00Z,\n"
            for pid, email in EMAILS.items()
        )
        land(settings, "people", "p.csv", PEOPLE_HEADER + snapshot, day)
    return settings.model_copy(update={"definitions": str(definitions)})


AGE = [0]


def drop(ws, relative: str, content: str | bytes) -> Path:
    """Drop a file into the inbox; each later drop is one minute newer."""
    path = Path(ws.inbox) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    AGE[0] += 60
    stamp = 1_800_000_000 + AGE[0]
    os.utime(path, (stamp, stamp))
    return path


def unclaimed(keys: list[str]) -> list[str]:
    """Keys under _processed/ without the attempt folder (attempt names are random)."""
    return [re.sub(r"/\d{8}T\d{12}-[0-9a-f]{6}/", "/", key) for key in keys]


def claimed(ws, pattern: str) -> list[Path]:
    """Files under the inbox matching `pattern` with any attempt folder in place of `*`."""
    return sorted(Path(ws.inbox).glob(pattern))


def state(ws, day: date) -> tuple[set, set, dict]:
    root = Root(ws.lake)
    manifest = read_manifest(root, read_catalog(root), day)
    members = set(read_table(root, manifest, "membership").select("segment_id", "person_id").rows())
    changes = set(
        read_table(root, manifest, "changes")
        .select("segment_id", "person_id", "change", "reason")
        .rows()
    )
    return members, changes, manifest


def test_add_remove_and_reasons_over_runs(ws):
    drop(ws, "vip/first.csv", "person_id\na\nb\n")
    run(ws, D1)
    members, changes, manifest = state(ws, D1)
    assert {("vip", "a"), ("vip", "b"), ("vip_pro", "a")} <= members
    assert ("vip", "a", "entered", "new_segment") in changes  # first run
    assert unclaimed(manifest.manual.files) == ["_processed/2026-03-30/0001/vip/first.csv"]
    assert not (Path(ws.inbox) / "vip/first.csv").exists()

    drop(ws, "vip/remove/out.csv", "person_id\nb\n")
    drop(ws, "vip/more.csv", "id\ne\n")
    run(ws, D2)
    members, changes, _ = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a"), ("vip", "e")}
    assert ("vip", "b", "exited", "removed") in changes
    assert ("vip", "e", "entered", "added") in changes

    run(ws, D3)  # nothing new: members persist, nothing re-applied
    members, changes, manifest = state(ws, D3)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a"), ("vip", "e")}
    assert changes == set() and manifest.manual.files == []


def test_clear_then_add_in_one_run(ws):
    drop(ws, "vip/first.csv", "person_id\na\nb\n")
    run(ws, D1)
    drop(ws, "vip/clear", "")
    drop(ws, "vip/again.csv", "person_id\na\n")
    run(ws, D2)
    members, changes, manifest = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a")}
    assert {c for c in changes if c[0] == "vip"} == {("vip", "b", "exited", "cleared")}
    assert [f.rsplit("/", 1)[-1] for f in manifest.manual.files] == ["clear", "again.csv"]


def test_action_column_overrides_the_folder(ws):
    drop(ws, "vip/mixed.csv", "person_id,action\na,add\nb,add\n")
    run(ws, D1)
    drop(ws, "vip/mixed2.csv", "person_id,action\nb,remove\ne,\n")
    run(ws, D2)
    members, _, _ = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a"), ("vip", "e")}


def test_emails_unknown_ids_and_ambiguity_are_reported(ws):
    drop(
        ws,
        "beta/by-email.csv",
        "\ufeffemail\r\n  ANN@example.COM \r\nshared@example.com\r\nnobody@example.com\r\n",
    )
    drop(
        ws,
        "vip/ids.csv",
        "person_id,email\na,zzz@example.com\nghost\n".replace("ghost\n", "ghost,\n"),
    )
    run(ws, D1)
    members, _, manifest = state(ws, D1)
    assert ("beta", "a") in members and ("beta", "c") not in members
    reports = {r.file: r for r in manifest.manual.applied}
    beta = reports["beta/by-email.csv"]
    assert (beta.rows, beta.applied) == (3, 1)
    assert beta.ambiguous_emails == ["shared@example.com"]
    assert beta.unknown == ["nobody@example.com"]
    vip = reports["vip/ids.csv"]
    assert vip.unknown == ["ghost"]
    assert "email ignored" in vip.notes[0]


@pytest.mark.parametrize(
    ("relative", "content", "problem"),
    [
        ("vip/bad.csv", "person_id,action\na,add\nb,promote\n", "line 3: action 'promote'"),
        ("vip/bad.csv", "name\nann\n", "line 1: no identifier column"),
        ("vip/scan.csv", b"%PDF-1.7\n\x00\x01\x81", "vip/scan.csv is not text in a known"),
        ("vip/brief.pdf", b"%PDF-1.7\n", "'brief.pdf' is not a file type the inbox reads"),
        ("vip/book.xlsx", b"PK\x03\x04 no zip", "vip/book.xlsx is not a readable Excel"),
        ("vip/book.xlsx", workbook(), "the first sheet of vip/book.xlsx is empty"),
        ("vip/bad.csv", "person_id\na,extra\n", "line 2: 2 fields, the header has 1"),
        ("nope/x.csv", "person_id\na\n", "there is no segment 'nope'"),
        ("pro/x.csv", "person_id\na\n", "'pro' is data-driven"),
        ("vip/deeper/x.csv", "person_id\na\n", "expected <segment>/<file>, <segment>/remove/"),
        ("Bad Segment/x.csv", "person_id\na\n", "'Bad Segment' is not a valid segment id"),
    ],
)
def test_files_that_cannot_be_applied_go_to_rejected(ws, relative, content, problem):
    drop(ws, relative, content)
    drop(ws, "vip/good.csv", "person_id\ne\n")
    run(ws, D1)
    members, _, manifest = state(ws, D1)
    assert ("vip", "e") in members  # the good file is applied all the same
    (refused,) = manifest.manual.rejected
    assert any(problem in p for p in refused.problems)
    rejected = Path(ws.inbox) / refused.moved_to
    assert rejected.exists()
    report = rejected.with_name(rejected.name + ".error.txt").read_text()
    assert problem in report
    assert not (Path(ws.inbox) / relative).exists()


def test_files_as_marketers_save_them_are_applied(ws):
    """Excel's semicolon CSV (BOM, CRLF), its "Unicode text" (UTF-16, tabs), a Latin-1 CSV, a
    workbook and a pipe-separated removal, all in one run."""
    drop(ws, "vip/europe.csv", "\ufeffEmail;first name\r\nann@example.com;Ann\r\n".encode())
    drop(ws, "vip/unicode.txt", "person_id\tname\r\nb\tBob\r\nd\tZoë\r\n".encode("utf-16"))
    drop(ws, "beta/latin1.csv", "email;name\neve@example.com;Ève Müller\n".encode("latin-1"))
    drop(ws, "beta/book.xlsx", workbook([" ID ", "Name"], ["b", "Bob"], ["c", None]))
    drop(ws, "vip/remove/out.tsv", "id|name\nd|Zoë\n")
    run(ws, D1)
    members, _, manifest = state(ws, D1)
    assert {m for m in members if m[0] in ("vip", "beta")} == {
        ("vip", "a"),
        ("vip", "b"),
        ("beta", "b"),
        ("beta", "c"),
        ("beta", "e"),
    }
    assert manifest.manual.rejected == []
    reports = {r.file: r for r in manifest.manual.applied}
    assert [(r.rows, r.applied) for r in reports.values()] == [
        (1, 1),
        (2, 2),
        (1, 1),
        (2, 2),
        (1, 1),
    ]
    assert any("Windows-1252" in note for note in reports["beta/latin1.csv"].notes)


def test_manual_command_drops_a_workbook_the_next_run_applies(ws, tmp_path):
    book = tmp_path / "list.xlsx"
    book.write_bytes(workbook(["Email"], ["bob@example.com"]))
    flags = ["--inbox", ws.inbox, "--definitions", ws.definitions]
    result = runner.invoke(app, ["manual", "add", "vip", "--file", str(book), *flags])
    assert result.exit_code == 0, result.output
    (dropped,) = Path(ws.inbox).glob("vip/*")
    assert dropped.suffix == ".xlsx"
    run(ws, D1)
    members, _, _ = state(ws, D1)
    assert {m for m in members if m[0] == "vip"} == {("vip", "b")}


def test_paths_with_dot_dot_are_refused():
    assert _classify("../x.csv") == "the path has empty, '.' or '..' parts"
    assert _classify("vip/../x.csv") == "the path has empty, '.' or '..' parts"
    assert _classify("vip/x.csv") == ("vip", "add")


def test_a_rerun_reapplies_exactly_the_files_of_its_date(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    run(ws, D1)
    drop(ws, "vip/later.csv", "person_id\nb\n")  # arrives after D1 committed
    run(ws, D1)  # rerun: same files, same rows
    members, _, manifest = state(ws, D1)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a")}
    assert unclaimed(manifest.manual.files) == ["_processed/2026-03-30/0001/vip/first.csv"]
    assert (Path(ws.inbox) / "vip/later.csv").exists()
    run(ws, D2)
    members, _, _ = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a"), ("vip", "b")}


def crash_before_commit(ws, day: date, monkeypatch) -> None:
    """Run `day` up to (not including) its commit, then fail, as a crash would."""
    import transforms.runs.steps as runs_module

    def broken(*args, **kwargs):
        raise RuntimeError("crash after the inbox step")

    with monkeypatch.context() as patch:
        patch.setattr(runs_module, "commit", broken)
        with pytest.raises(RuntimeError):
            run(ws, day)


def test_files_of_a_failed_run_are_applied_exactly_once_later(ws, monkeypatch):
    drop(ws, "vip/first.csv", "person_id\na\n")
    crash_before_commit(ws, D1, monkeypatch)
    (held,) = claimed(ws, "_processed/2026-03-30/*/0001/vip/first.csv")
    # nothing has committed since the crash, so the crashed attempt might still be alive:
    # its file is left alone, and applied by the first run after the next commit
    run(ws, D2)
    members, _, manifest = state(ws, D2)
    assert ("vip", "a") not in members and manifest.manual.files == []
    assert held.exists()
    run(ws, D3)
    members, _, manifest = state(ws, D3)
    assert ("vip", "a") in members
    assert unclaimed(manifest.manual.files) == ["_processed/2026-04-01/0001/vip/first.csv"]
    assert not held.exists()


def test_a_retry_of_the_date_takes_over_the_uploads_a_crashed_attempt_claimed(ws, monkeypatch):
    drop(ws, "vip/first.csv", "person_id\na\nb\n")
    drop(ws, "beta/list.csv", "person_id\nc\n")
    crash_before_commit(ws, D1, monkeypatch)
    held = claimed(ws, "_processed/2026-03-30/*/000?/*/*.csv")
    assert len(held) == 2
    run(ws, D1)  # the retry applies them in the run of the date they were claimed for
    members, _, manifest = state(ws, D1)
    assert {("vip", "a"), ("vip", "b"), ("beta", "c")} <= members
    assert manifest.manual.files == [
        str(path.relative_to(ws.inbox)) for path in held
    ]  # taken over where they are, in their claim order
    run(ws, D2)
    _, changes, manifest = state(ws, D2)
    assert manifest.manual.files == [] and changes == set()  # applied once


def test_a_claim_whose_move_was_cut_short_is_applied_once(ws):
    """On an object store a claim is a copy then a delete: killed in between, the upload is
    both claimed and still in place. The retry applies the claim and removes the source."""
    source = drop(ws, "vip/first.csv", "person_id\na\nb\n")
    claim = Path(ws.inbox, "_processed/2026-03-30/20261130T000000000000-abcdef/0001/vip/first.csv")
    claim.parent.mkdir(parents=True)
    claim.write_bytes(source.read_bytes())
    drop(ws, "vip/remove/out.csv", "person_id\nb\n")
    run(ws, D1)
    members, _, manifest = state(ws, D1)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a")}
    assert unclaimed(manifest.manual.files) == [
        "_processed/2026-03-30/0001/vip/first.csv",
        "_processed/2026-03-30/0002/vip/remove/out.csv",
    ]
    assert not source.exists() and claim.exists()


def test_claim_order_survives_a_chain_of_crashed_attempts(ws, monkeypatch):
    drop(ws, "vip/first.csv", "person_id\na\nb\n")
    run(ws, D1)
    drop(ws, "vip/clear", "")
    crash_before_commit(ws, D2, monkeypatch)  # claims the clear as 0001
    drop(ws, "vip/again.csv", "person_id\na\n")
    drop(ws, "vip/bad.csv", "name\nann\n")
    crash_before_commit(ws, D2, monkeypatch)  # takes over 0001, claims 0002 and 0003 (refused)
    drop(ws, "vip/last.csv", "person_id\nd\n")
    run(ws, D2)
    members, changes, manifest = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a"), ("vip", "d")}
    assert {c for c in changes if c[0] == "vip"} == {
        ("vip", "b", "exited", "cleared"),
        ("vip", "d", "entered", "added"),
    }
    assert [f.rsplit("/", 1)[-1] for f in manifest.manual.files] == [
        "clear",
        "again.csv",
        "last.csv",
    ]
    assert [re.sub(r"^_processed/[^/]+/[^/]+/", "", k) for k in manifest.manual.files] == [
        "0001/vip/clear",
        "0002/vip/again.csv",
        "0003/vip/last.csv",
    ]
    (refused,) = manifest.manual.rejected  # filed by the second, crashed attempt
    assert refused.file == "vip/bad.csv" and "no identifier column" in refused.problems[0]


def test_an_upload_claimed_by_a_run_in_flight_is_not_taken_by_another(ws, monkeypatch):
    """A run of D1 holds an upload (paused before its commit) while a run of D2 runs: D2 must
    neither apply nor move it, and D1's committed manifest must list a file that exists."""
    import threading

    import transforms.runs.steps as runs_module

    drop(ws, "vip/add.csv", "person_id\na\n")
    paused, resume = threading.Event(), threading.Event()
    real_commit = runs_module.commit

    def commit_later(*args, **kwargs):
        paused.set()
        resume.wait(timeout=60)
        return real_commit(*args, **kwargs)

    outcome: list[object] = []

    def first_run() -> None:
        try:
            outcome.append(run(ws, D1))
        except ConcurrentRunError as exc:
            outcome.append(exc)

    with monkeypatch.context() as patch:
        patch.setattr(runs_module, "commit", commit_later)
        first = threading.Thread(target=first_run)
        first.start()
        assert paused.wait(timeout=60)
        patch.setattr(runs_module, "commit", real_commit)
        try:
            run(ws, D2)  # commits while D1 holds the upload
        finally:
            resume.set()
            first.join()
    assert isinstance(outcome[0], ConcurrentRunError)  # D1's swap fails: D2 committed first
    _, _, manifest = state(ws, D2)
    assert manifest.manual.files == []  # D2 neither applied nor moved D1's upload
    assert claimed(ws, "_processed/2026-03-30/*/0001/vip/add.csv")
    run(ws, D3)  # D1's attempt is dead now: its upload is applied, once
    members, _, manifest = state(ws, D3)
    assert ("vip", "a") in members
    assert unclaimed(manifest.manual.files) == ["_processed/2026-04-01/0001/vip/add.csv"]


def test_people_leaving_the_snapshot_leave_manual_segments(ws):
    drop(ws, "vip/first.csv", "person_id\na\ne\n")
    run(ws, D1)
    land(
        ws,
        "people",
        "p.csv",
        PEOPLE_HEADER
        + "".join(f"{p},{p}@x.com,A,free,US,30,1,true,2026-01-01T00:00:00Z,\n" for p in "abcd"),
        D2,
    )
    run(ws, D2)
    members, changes, _ = state(ws, D2)
    assert ("vip", "e") not in members
    assert ("vip", "e", "exited", "left_snapshot") in changes


runner = CliRunner()


def test_manual_command_drops_a_file_the_next_run_applies(ws):
    flags = ["--inbox", ws.inbox, "--definitions", ws.definitions]
    result = runner.invoke(app, ["manual", "add", "vip", "--ids", "a,b", *flags])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["manual", "remove", "vip", "--ids", "bob@example.com", "--email", *flags]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["manual", "add", "pro", "--ids", "a", *flags])
    assert result.exit_code == 1 and "data-driven" in result.stderr
    result = runner.invoke(app, ["manual", "add", "nope", "--ids", "a", *flags])
    assert result.exit_code == 1 and "unknown segment 'nope'" in result.stderr
    run(ws, D1)
    members, _, _ = state(ws, D1)
    assert {m for m in members if m[0] == "vip"} == {("vip", "a")}


def test_a_rerun_whose_uploads_vanished_says_what_to_restore(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    run(ws, D1)
    (held,) = claimed(ws, "_processed/2026-03-30/*/0001/vip/first.csv")
    held.unlink()
    with pytest.raises(MissingInputError, match="no longer in") as raised:
        run(ws, D1)
    assert "restore them" in raised.value.hint


def test_carried_uploads_for_segments_that_no_longer_exist_are_refused(ws, monkeypatch):
    drop(ws, "beta/list.csv", "person_id\na\n")
    crash_before_commit(ws, D1, monkeypatch)
    Path(ws.definitions, "beta.yaml").unlink()
    run(ws, D2)  # commits, so the crashed attempt can no longer commit
    run(ws, D3)
    _, _, manifest = state(ws, D3)
    (refused,) = manifest.manual.rejected
    assert refused.file == "beta/list.csv" and "no segment 'beta'" in refused.problems[0]


def test_bad_definitions_stop_a_run_before_it_touches_the_inbox(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    Path(ws.definitions, "broken.yaml").write_text("name: B\ntype: data_driven\nwhere: plann\n")
    with pytest.raises(DefinitionErrors):
        run(ws, D1)
    assert (Path(ws.inbox) / "vip/first.csv").exists()
    assert not (Path(ws.inbox) / "_processed").exists()


def test_a_failed_rerun_leaves_the_committed_uploads_where_they_are(ws, monkeypatch):
    drop(ws, "vip/bad.csv", "name\nann\n")  # claimed as 0001, then refused
    drop(ws, "vip/add.csv", "person_id\na\n")  # claimed as 0002
    run(ws, D1)
    _, _, first = state(ws, D1)
    (listed,) = first.manual.files
    crash_before_commit(ws, D1, monkeypatch)  # a rerun that fails
    assert (Path(ws.inbox) / listed).exists()
    run(ws, D1)  # and a rerun that succeeds re-applies the same file
    members, _, again = state(ws, D1)
    assert again.manual.files == [listed] and ("vip", "a") in members


# --- replace-lists, error files, the dry run, refusals dated by the run that meets them -------
def test_a_replace_list_becomes_the_whole_membership(ws):
    drop(ws, "vip/first.csv", "person_id\na\nb\n")
    run(ws, D1)
    drop(ws, "vip/replace/crm-sync.csv", "email\nbob@example.com\neve@example.com\n")
    run(ws, D2)
    members, changes, manifest = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "b"), ("vip", "e")}
    assert {c for c in changes if c[0] == "vip"} == {
        ("vip", "a", "exited", "replaced"),
        ("vip", "e", "entered", "added"),
    }  # b stays: no change
    (report,) = manifest.manual.applied
    assert (report.action, report.rows, report.applied) == ("replace", 2, 2)


def test_a_replace_list_after_other_uploads_of_the_run_wins(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    drop(ws, "vip/replace/sync.csv", "person_id\nb\n")
    run(ws, D1)
    members, changes, _ = state(ws, D1)
    assert {m for m in members if m[0] == "vip"} == {("vip", "b")}
    assert ("vip", "b", "entered", "new_segment") in changes


def test_a_replace_list_that_names_nobody_known_is_refused_not_applied(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    run(ws, D1)
    drop(ws, "vip/replace/wrong-column.csv", "person_id\nann@example.com\nbob@example.com\n")
    drop(ws, "beta/replace/bad.csv", "person_id,action\na,remove\n")
    run(ws, D2)
    members, _, manifest = state(ws, D2)
    assert ("vip", "a") in members  # the segment was not emptied
    problems = {r.file: r.problems[0] for r in manifest.manual.rejected}
    assert "none of its 2 rows names a known person" in problems["vip/replace/wrong-column.csv"]
    assert "a replace-list has no action column" in problems["beta/replace/bad.csv"]


def test_unknown_ids_are_written_to_an_error_file_beside_the_processed_upload(ws):
    ghosts = [f"ghost{n:02d}" for n in range(25)]
    drop(ws, "vip/ids.csv", "person_id\na\n" + "".join(f"{g}\n" for g in ghosts))
    drop(ws, "beta/emails.csv", "email\nshared@example.com\nbob@example.com\n")
    run(ws, D1)
    _, _, manifest = state(ws, D1)
    reports = {r.file: r for r in manifest.manual.applied}
    vip = reports["vip/ids.csv"]
    assert vip.unknown == ghosts[:20] and vip.unknown_count == 25
    (claim,) = [f for f in manifest.manual.files if f.endswith("vip/ids.csv")]
    assert vip.errors_file == claim.rsplit("/", 3)[0] + "/0001.errors.csv"
    lines = (Path(ws.inbox) / vip.errors_file).read_text().splitlines()
    assert lines[0] == "line,value,problem"
    assert lines[1:] == [f"{n + 3},{g},unknown person_id" for n, g in enumerate(ghosts)]
    beta = reports["beta/emails.csv"]
    errors = (Path(ws.inbox) / beta.errors_file).read_text().splitlines()
    assert errors[1:] == ["2,shared@example.com,ambiguous email: 2 people have it"]
    assert reports.keys() == {"vip/ids.csv", "beta/emails.csv"}  # error files are no uploads
    run(ws, D2)
    _, _, manifest = state(ws, D2)
    assert manifest.manual.applied == []


def test_run_output_lists_uploads_and_the_first_unknown_ids(ws):
    ghosts = [f"ghost{n:02d}" for n in range(25)]
    drop(ws, "vip/ids.csv", "person_id\na\n" + "".join(f"{g}\n" for g in ghosts))
    drop(ws, "vip/bad.csv", "name\nann\n")
    flags = ["--config", str(write_config(ws))]
    result = runner.invoke(app, ["run", "--date", str(D1), "--no-publish", *flags])
    assert result.exit_code == 0, result.output
    assert "upload vip/ids.csv: add 1 of 26 rows, 25 unknown" in result.stdout
    assert "unknown: " + ", ".join(ghosts[:20]) + " and 5 more" in result.stdout
    assert "0001.errors.csv" in result.stdout
    assert "refused vip/bad.csv" in result.stdout and "_rejected/2026-03-30/" in result.stdout


def test_a_rerun_reports_the_refusals_of_its_date(ws):
    drop(ws, "vip/bad.csv", "name\nann\n")
    run(ws, D1)
    _, _, first = state(ws, D1)
    run(ws, D1)
    _, _, again = state(ws, D1)
    assert [r.file for r in again.manual.rejected] == ["vip/bad.csv"]
    assert again.manual.rejected == first.manual.rejected


def test_manual_check_is_a_dry_run_of_the_next_run(ws):
    drop(ws, "vip/first.csv", "person_id\na\n")
    run(ws, D1)
    drop(ws, "vip/more.csv", "person_id\nb\nghost\n")
    drop(ws, "vip/replace/sync.csv", "email\nbob@example.com\neve@example.com\n")
    drop(ws, "vip/bad.csv", "name\nann\n")
    drop(ws, "nope/x.csv", "person_id\na\n")
    before = sorted(p.relative_to(ws.inbox) for p in Path(ws.inbox).rglob("*"))
    flags = ["--config", str(write_config(ws))]
    result = runner.invoke(app, ["manual", "check", *flags])
    assert result.exit_code == 1, result.output  # something would be refused
    out = result.stdout
    assert "the run of 2026-03-31" in out  # the date after the latest committed run
    assert "vip/more.csv: add 1 of 2 rows, 1 unknown" in out
    assert "vip/replace/sync.csv: replace 2 of 2 rows" in out
    assert "vip: 1 -> 2 members" in out
    assert "vip/bad.csv" in out and "no identifier column" in out
    assert "nope/x.csv" in out and "there is no segment 'nope'" in out
    assert sorted(p.relative_to(ws.inbox) for p in Path(ws.inbox).rglob("*")) == before
    as_json = runner.invoke(app, ["manual", "check", "--json", *flags])
    data = json.loads(as_json.stdout)
    assert data["day"] == "2026-03-31" and len(data["rejected"]) == 2
    run(ws, D2)  # and the run does what the check said
    members, _, _ = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "b"), ("vip", "e")}


def test_manual_command_says_which_run_applies_the_file(ws):
    run(ws, D1)
    flags = ["--config", str(write_config(ws))]
    result = runner.invoke(app, ["manual", "add", "vip", "--ids", "a", *flags])
    assert result.exit_code == 0, result.output
    assert "the run of 2026-03-31 applies it" in result.stdout
    result = runner.invoke(app, ["manual", "replace", "vip", "--ids", "b", *flags])
    assert result.exit_code == 0, result.output
    (dropped,) = Path(ws.inbox).glob("vip/replace/*.csv")
    run(ws, D2)
    members, _, _ = state(ws, D2)
    assert {m for m in members if m[0] == "vip"} == {("vip", "b")}
    assert not dropped.exists()


def test_the_inbox_dag_dates_refusals_by_the_run_that_would_apply_them(ws):
    from transforms.manual.inbox import check_uploads

    run(ws, D1)
    drop(ws, "vip/bad.csv", "name\nann\n")
    result = check_uploads(ws, move_refused=True)  # no date: the run after the latest commit
    assert result.day == D2
    (refused,) = result.rejected
    assert refused.moved_to.startswith("_rejected/2026-03-31/")
    run(ws, D2)
    _, _, manifest = state(ws, D2)
    assert [r.file for r in manifest.manual.rejected] == ["vip/bad.csv"]


def write_config(ws) -> Path:
    """A segments.yaml naming the workspace's roots, for CLI tests."""
    path = Path(ws.lake).parent / "segments.yaml"
    roots = ("landing", "lake", "inbox", "definitions", "contracts")
    path.write_text("".join(f"{name}: {getattr(ws, name)}\n" for name in roots))
    return path
