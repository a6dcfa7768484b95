"""Bad definitions are refused: every problem in every file, with the file, the position,
the offending text and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.language_fixture import AS_OF
from tests.support.workspace import CONTRACTS, REPO
from transforms.contracts.odcs import load_contract
from transforms.language.compiler import compile_segments
from transforms.language.definitions import load_segments, read_folder

GOOD = "name: Good\ntype: data_driven\nwhere: plan = 'pro'\n"


def problems_for(folder: Path, files: dict[str, str]) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    found = read_folder(folder)
    people, events = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    _, compile_problems = compile_segments(found.to_check, people, events, AS_OF)
    return found.problems + compile_problems


def only_problem(tmp_path: Path, text: str, name: str = "seg.yaml"):
    found = problems_for(tmp_path, {name: text})
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        (
            "name: X\ntype: data_driven\nwhere: plann = 'pro'\n",
            "unknown person attribute 'plann'",
            "did you mean 'plan'?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: (SELECT 1) = 1\n",
            "subqueries are not allowed in a segment predicate",
            "in_segment",
        ),
        (
            "name: X\ntype: data_driven\nwhere: plan IN (SELECT plan FROM people)\n",
            "subqueries are not allowed",
            "in_segment",
        ),
        (
            "name: X\ntype: data_driven\nwhere: row_number() OVER () = 1\n",
            "window functions are not allowed",
            "event_count",
        ),
        (
            "name: X\ntype: data_driven\nwhere: count(*) > 1\n",
            "SQL aggregate count(*) is not allowed",
            "event_count",
        ),
        (
            "name: X\ntype: data_driven\nwhere: \"plan = 'pro'; DROP TABLE people\"\n",
            "not several statements",
            "remove the ';'",
        ),
        (
            "name: X\ntype: data_driven\nwhere: reflect('java.lang.Runtime', 'exec') = 1\n",
            "function reflect() is not part of the segment language",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: read_csv('/etc/passwd') IS NULL\n",
            "function read_csv() is not part of the segment language",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('purchase', within => '1 month') > 0\n",
            "interval unit MONTH is not supported",
            "days",
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_sum('purchase', amout) > 0\n",
            "unknown event column 'amout'",
            "did you mean 'amount'?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', where => plan = 'pro') > 0\n",
            "unknown event column 'plan'",
            None,
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: event_count('x', where => event_count('y') > 1) > 0\n",
            "event_count() cannot be used inside an event filter",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', when => '7 days') > 0\n",
            "unknown option 'when'",
            "within =>",
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', withn => '7 days') > 0\n",
            "unknown option 'withn'",
            "did you mean within =>?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: lenght(email) > 3\n",
            "function lenght() is not part of the segment language",
            "did you mean length()?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: plan = 3\n",
            "cannot compare plan (string) with 3 (integer)",
            "CAST",
        ),
        ("name: X\ntype: data_driven\nwhere: plan\n", "plan is string, not a condition", None),
        ("name: X\ntype: data_driven\nwhere: in_segment('nope')\n", "unknown segment 'nope'", None),
        (
            "name: X\ntype: data_driven\nwhere: days_in_segment('nope') > 3\n",
            "unknown segment 'nope'",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: days_in_segment(plan) > 3\n",
            "days_in_segment() takes a quoted segment id",
            "write days_in_segment('vip')",
        ),
        (
            "name: X\ntype: data_driven\nwhere: days_in_segment('seg') = 'x'\n",
            "cannot compare",
            None,
        ),
        ("name: X\ntype: data_driven\nwhere: plan = = 'x'\n", "cannot parse the predicate", None),
        (
            "name: X\ntype: data_driven\nwhere: t.plan = 'x'\n",
            "qualified name t.plan is not allowed",
            "write just plan",
        ),
        (
            "name: X\ntype: data_driven\nwhere: age BETWEEN SYMMETRIC 5 AND -5\n",
            "BETWEEN SYMMETRIC is not supported",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: plan + NULL IS NULL\n",
            "cannot compute with string values",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: CAST(created_at AS VARCHAR) = 'x'\n",
            "CAST of a timestamp to text is not supported",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: created_at || 'x' = 'y'\n",
            "|| of a timestamp is not supported",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: age < 99999999999999999999\n",
            "too large for an integer",
            None,
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: event_count('purchase', within => '100000000 days') >= 0\n",
            "cannot compile this predicate",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: round(lifetime_value, 5000000000) > 1\n",
            "round() keeps at most 15 decimals",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: trial_ends_on = '20260331'\n",
            "'20260331' is not a valid date",
            "YYYY-MM-DD",
        ),
        (
            "name: X\ntype: data_driven\nwhere: CAST(age AS SMALLINT) > 1\n",
            "CAST to SMALLINT is not supported",
            None,
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: event_count('x', ago => ('30 days', '90 days')) > 0\n",
            "ago => ('30 days', '90 days') is empty: the first bound must be longer",
            "write ago => ('90 days', '30 days')",
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', ago => '30 days') > 0\n",
            "ago => needs two intervals in parentheses",
            "ago => ('90 days', '30 days')",
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: event_count('x', within => '7 days', ago => ('9 days', '2 days')) > 0\n",
            "ago => cannot be combined with within =>",
            "within => '7 days' is ago => ('7 days', '0 days')",
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: event_count('x', ago => ('3 months', '1 day')) > 0\n",
            "interval unit MONTH is not supported",
            "days",
        ),
        (
            "name: X\ntype: data_driven\nwhere: bucket(0) < 1\n",
            "bucket() takes a whole number of buckets from 2 to 1,000,000, not 0",
            "bucket(100) < 10",
        ),
        (
            "name: X\ntype: data_driven\nwhere: bucket(1000001) < 1\n",
            "from 2 to 1,000,000, not 1000001",
            None,
        ),
        ("name: X\ntype: data_driven\nwhere: bucket(2.5) < 1\n", "not 2.5", None),
        ("name: X\ntype: data_driven\nwhere: bucket(age) < 1\n", "not age", None),
        (
            "name: X\ntype: data_driven\nwhere: bucket(10, plan) < 1\n",
            "bucket() takes a quoted salt second",
            "a new salt reshuffles",
        ),
        (
            "name: X\ntype: data_driven\nwhere: bucket() < 1\n",
            "bucket() takes 1 to 2 argument(s), got 0",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', where => bucket(10) = 1) > 0\n",
            "bucket() cannot be used inside an event filter",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: buckett(10) = 1\n",
            "function buckett() is not part of the segment language",
            "did you mean bucket()?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('signed_up')\n",
            "performed_in_order() takes 2 to 5 steps, got 1",
            "a single step is performed('signed_up', ...)",
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', 'b', 'c', 'd', 'e', 'f')\n",
            "performed_in_order() takes 2 to 5 steps, got 6",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', amount)\n",
            "performed_in_order() takes event names in quotes",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', 'b', gap => '0 days')\n",
            "gap => needs a positive interval",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', 'b', gapp => '1 day')\n",
            "unknown option 'gapp'",
            "did you mean gap =>?",
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed('a', gap => '1 day')\n",
            "unknown option 'gap' of performed()",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', 'b',"
            " within => '7 days', ago => ('9 days', '2 days'))\n",
            "ago => cannot be combined with within =>",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_in_order('a', 'b') > 1\n",
            "cannot compare",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_regularly('x', every => '7 days')\n",
            "performed_regularly() needs periods =>, at_least =>",
            "periods => 4, at_least => 3",
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: performed_regularly('x', every => '7 days', periods => 4, at_least => 5)\n",
            "at_least => takes a whole number from 1 to 4, not 5",
            None,
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: performed_regularly('x', every => '7 days', periods => 0, at_least => 1)\n",
            "periods => takes a whole number from 1 to 100, not 0",
            None,
        ),
        (
            "name: X\ntype: data_driven\n"
            "where: performed_regularly('x', every => '1 month', periods => 2, at_least => 1)\n",
            "interval unit MONTH is not supported",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_regularly('x', every => '7 days',"
            " periods => 2, at_least => 1, within => '30 days')\n",
            "unknown option 'within' of performed_regularly()",
            "every =>, periods =>, at_least =>, times =>, where =>",
        ),
        (
            "name: X\ntype: data_driven\nwhere: performed_regularly('x', every => '7 days',"
            " periods => 2, at_least => 1, times => 0)\n",
            "times => takes a whole number from 1",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count_distinct('x') > 1\n",
            "event_count_distinct() takes 2 argument(s), got 1",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count_distinct('x', 'currency') > 1\n",
            "event_count_distinct() takes an event column second",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count_distinct('x', plan) > 1\n",
            "unknown event column 'plan'",
            None,
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_sum('x', currency) > 1\n",
            "event_sum() needs a numeric event column; currency is string",
            "event_count_distinct()",
        ),
        (
            "name: X\ntype: data_driven\nwhere: event_count('x', ag => ('3 days', '1 day')) > 0\n",
            "unknown option 'ag'",
            "did you mean ago =>?",
        ),
    ],
)
def test_bad_predicates_name_the_problem_and_the_fix(tmp_path, text, message, fix):
    problem = only_problem(tmp_path, text)
    assert problem.file.endswith("seg.yaml")
    assert message in str(problem)
    if fix:
        assert fix in (problem.hint or "")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("Bad-Name.yaml", GOOD, "'Bad-Name' is not a valid segment id"),
        ("seg.yaml", GOOD + "colour: red\n", "unknown key `colour`"),
        ("seg.yaml", "name: X\ntype: data_driven\n", "a data_driven segment needs a `where`"),
        (
            "seg.yaml",
            "name: X\ntype: manual\nwhere: plan = 'pro'\n",
            "a manual segment cannot have `where`",
        ),
        ("seg.yaml", "type: manual\n", "missing required key `name`"),
        ("seg.yaml", "name: X\ntype: smart\nwhere: TRUE\n", "`type`"),
        ("seg.yaml", "name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_are_refused(tmp_path, name, text, message):
    problem = only_problem(tmp_path, text, name)
    assert problem.file.endswith(name)
    assert message in str(problem)


def test_a_bad_id_suggests_a_good_file_name(tmp_path):
    problem = only_problem(tmp_path, GOOD, "Engaged Trials.yaml")
    assert "engaged_trials.yaml" in problem.hint


def test_duplicate_ids_are_refused(tmp_path):
    found = problems_for(tmp_path, {"same.yaml": GOOD, "same.yml": GOOD})
    assert len(found) == 1
    assert "duplicate segment id 'same'" in str(found[0])


def test_days_in_segment_suggests_the_closest_id_and_its_cycles_are_refused(tmp_path):
    found = problems_for(
        tmp_path,
        {
            "buyers.yaml": GOOD,
            "a.yaml": "name: A\ntype: data_driven\nwhere: days_in_segment('buyer') > 1\n",
            "b.yaml": "name: B\ntype: data_driven\nwhere: days_in_segment('c') > 1\n",
            "c.yaml": "name: C\ntype: data_driven\nwhere: in_segment('b')\n",
        },
    )
    messages = {str(p): p.hint for p in found}
    assert any(
        "unknown segment 'buyer'" in m and h == "did you mean 'buyers'?"
        for m, h in messages.items()
    )
    assert any("cycle" in m and "b -> c -> b" in m for m in messages), messages


def test_cycles_name_every_segment_on_them(tmp_path):
    found = problems_for(
        tmp_path,
        {
            "a.yaml": "name: A\ntype: data_driven\nwhere: in_segment('b')\n",
            "b.yaml": "name: B\ntype: data_driven\nwhere: in_segment('c') AND plan = 'pro'\n",
            "c.yaml": "name: C\ntype: data_driven\nwhere: in_segment('a')\n",
            "ok.yaml": "name: OK\ntype: data_driven\nwhere: in_segment('a') OR TRUE\n",
        },
    )
    cycles = [p for p in found if "cycle" in str(p)]
    assert len(cycles) == 1
    assert "cycle: a -> b -> c -> a" in str(cycles[0])


def test_every_problem_of_every_file_is_reported_together(tmp_path):
    found = problems_for(
        tmp_path,
        {
            "one.yaml": "name: One\ntype: data_driven\nwhere: plann = 'x'\n",
            "two.yaml": "name: Two\ntype: manual\nwhere: TRUE\n",
            "three.yaml": "name: Three\ntype: data_driven\nwhere: agee > 3\n",
            "fine.yaml": GOOD,
        },
    )
    assert sorted(Path(p.file).name for p in found) == ["one.yaml", "three.yaml", "two.yaml"]


def test_positions_point_into_the_file(tmp_path):
    text = "name: X\ntype: data_driven\nwhere: |\n  plan = 'pro'\n  AND agee > 3\n"
    problem = only_problem(tmp_path, text)
    assert (problem.line, problem.column) == (5, 7)
    assert problem.text == "agee"
    inline = only_problem(tmp_path / "inline", "name: X\ntype: data_driven\nwhere: agee > 3\n")
    assert (inline.line, inline.column) == (3, 8)


def test_the_example_definitions_are_valid():
    segments, problems = load_segments(REPO / "segment_definitions")
    people, events = load_contract(CONTRACTS, "people"), load_contract(CONTRACTS, "events")
    workspace, compile_problems = compile_segments(segments, people, events, AS_OF)
    assert problems == [] and compile_problems == []
    assert len(segments) >= 12
    assert {s.spec.type for s in segments.values()} == {"data_driven", "manual"}


def test_a_reference_to_a_broken_segment_reports_only_the_broken_one(tmp_path):
    found = problems_for(
        tmp_path,
        {
            "a.yaml": "name: A\ntype: data_driven\nwhere: in_segment('b')\n",
            "b.yaml": "name: B\ntype: data_driven\nwhere: plann = 'x'\n",
        },
    )
    assert [Path(p.file).name for p in found] == ["b.yaml"]


def test_a_misspelt_key_or_type_suggests_the_right_one(tmp_path):
    key = only_problem(tmp_path, GOOD + "descripton: Pro users\n")
    assert "unknown key `descripton`" in str(key)
    assert key.hint.startswith("did you mean `description`?")
    assert key.line == 4
    kind = only_problem(tmp_path / "type", "name: X\ntype: data-driven\nwhere: TRUE\n")
    assert "'data-driven' is not a segment type" in str(kind)
    assert kind.hint.startswith("did you mean 'data_driven'?")
    assert kind.line == 2


def test_every_problem_of_one_file_is_reported_together(tmp_path):
    found = problems_for(
        tmp_path,
        {
            "several.yaml": "name: S\ntype: data_driven\ndescripton: x\nwhere: |\n"
            "  plann = 'pro'\n  AND (age = 'old' OR lenght(email) > 3)\n"
            "  AND NOT event_count('x', within => '1 month') > 0\n",
            "bad_id-.yaml": "name: B\ntype: data_driven\nwhere: agee > 3\n",
        },
    )
    assert [p.problem for p in found] == [
        "'bad_id-' is not a valid segment id",
        "unknown key `descripton`",
        "unknown person attribute 'agee'",
        "unknown person attribute 'plann'",
        "cannot compare age (integer) with 'old' (string)",
        "function lenght() is not part of the segment language",
        "interval unit MONTH is not supported",
    ]
    assert [(p.line, p.column) for p in found[3:]] == [(5, 3), (6, 8), (6, 23), (7, 38)]


def test_a_file_refused_for_a_key_is_not_loaded(tmp_path):
    (tmp_path / "seg.yaml").write_text(GOOD + "colour: red\n")
    segments, problems = load_segments(tmp_path)
    assert segments == {} and len(problems) == 1


@pytest.mark.parametrize(
    ("where", "message", "text"),
    [
        (
            "properties ->> 'plan' = 'pro'",
            "properties ->> 'plan' is not part of the segment language",
            "properties ->> 'plan'",
        ),
        (
            "lower( plan ) = 3",
            "cannot compare lower( plan ) (string) with 3 (integer)",
            "lower( plan ) = 3",
        ),
        (
            "Count(*) > 1",
            "SQL aggregate Count(*) is not allowed in a segment predicate",
            "Count(*)",
        ),
        ("coalesce(plan, 'x')", "coalesce(plan, 'x') is string, not a condition", None),
        ("age IN (1, 'a')", "cannot compare age (integer) with 'a' (string)", None),
        ("age BETWEEN 'a' AND 2", "cannot compare age (integer) with 'a' (string)", None),
        (
            "CASE plan WHEN 1 THEN 'x' END = 'x'",
            "cannot compare plan (string) with 1 (integer)",
            "1 THEN 'x'",
        ),
    ],
)
def test_problems_quote_the_predicate_as_written(tmp_path, where, message, text):
    problem = only_problem(tmp_path, f"name: X\ntype: data_driven\nwhere: {where}\n")
    assert problem.problem == message
    if text:
        assert problem.text == text


@pytest.mark.parametrize(
    ("where", "message", "hint"),
    [
        (
            "performed('purchase', where => properties.plann = 'pro')",
            "unknown field 'properties.plann' of the event properties",
            "did you mean 'properties.plan'?",
        ),
        (
            "event_sum('purchase', properties.prise) > 1",
            "unknown field 'properties.prise' of the event properties",
            "did you mean 'properties.price'?",
        ),
        (
            "performed('purchase', where => properties.price = 'abc')",
            "cannot compare properties.price (number) with 'abc' (string)",
            "CAST one side",
        ),
        (
            "event_sum('purchase', properties.plan) > 1",
            "event_sum() needs a numeric event column; properties.plan is string",
            "event_count_distinct()",
        ),
        (
            "performed('purchase', where => propertie.plan = 'pro')",
            "unknown object column 'propertie'",
            "did you mean 'properties.plan'?",
        ),
        (
            "properties.plan = 'pro'",
            "properties.plan is an event property: it is read inside an event function",
            "where => properties.plan",
        ),
        (
            "performed('purchase', where => properties IS NULL)",
            "properties is an object: a predicate reads one of its fields",
            "properties.source",
        ),
        (
            "performed('purchase', where => properties.plan.tier = 'x')",
            "properties.plan.tier is not a field: objects nest one level deep",
            "<column>.<field>",
        ),
        ("people.plan = 'pro'", "qualified name people.plan is not allowed", "write just plan"),
    ],
)
def test_event_properties_are_checked_like_columns(tmp_path, where, message, hint):
    problem = only_problem(tmp_path, f"name: X\ntype: data_driven\nwhere: {where}\n")
    assert problem.problem == message
    assert hint in problem.hint
