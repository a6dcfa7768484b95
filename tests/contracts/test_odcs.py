"""Data contracts: the repo's contracts load, derived artefacts follow them, bad ones fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.support.workspace import CONTRACTS, REPO
from transforms.contracts.expectations import suite_rules
from transforms.contracts.odcs import contract_docs, load_contract, load_contracts, parse_contract
from transforms.errors import ContractError

MINIMAL = """
apiVersion: v3.1.0
kind: DataContract
id: t
version: 1.0.0
status: active
schema:
  - name: things
    properties:
{properties}
"""


def contract_with(properties: str):
    return parse_contract(MINIMAL.format(properties=properties), "things.odcs.yaml")


def test_every_repo_contract_loads():
    found, problems = load_contracts(CONTRACTS)
    assert problems == []
    assert set(found) == {"people", "events", "manual_upload", "membership", "changes"}


def test_polars_schema_is_derived_from_logical_types():
    schema = load_contract(CONTRACTS, "events").polars_schema()
    assert schema["event_id"] == pl.String
    assert schema["timestamp"] == pl.Datetime("us", "UTC")
    assert schema["amount"] == pl.Float64


def test_people_primary_key_is_required_and_unique():
    people = load_contract(CONTRACTS, "people")
    assert people.primary_key == "person_id"
    key = people.column("person_id")
    assert key.required and key.unique


def test_expectation_suite_follows_the_contract():
    rules = dict(suite_rules(load_contract(CONTRACTS, "people")))
    assert set(rules) == {
        "person_id:required",
        "person_id:unique",
        "email:pattern",
        "plan:required",
        "plan:validValues",
        "country:pattern",
        "age:range",
        "lifetime_value:range",
        "created_at:required",
    }
    assert rules["plan:validValues"].value_set == ["free", "trial", "pro", "enterprise"]
    assert (rules["age:range"].min_value, rules["age:range"].max_value) == (13, 120)


def test_quality_rules_map_to_columns():
    contract = contract_with(
        """      - name: code
        logicalType: string
        quality:
          - metric: invalidValues
            arguments: {pattern: "^[A-Z]+$"}
            mustBe: 0
          - metric: nullValues
            mustBe: 0
          - metric: duplicateValues
            mustBe: 0
      - name: score
        logicalType: number
        logicalTypeOptions: {exclusiveMinimum: 0, maximum: 1}"""
    )
    code, score = contract.columns
    assert (code.pattern, code.required, code.unique) == ("^[A-Z]+$", True, True)
    assert (score.minimum, score.strict_minimum, score.maximum, score.strict_maximum) == (
        0,
        True,
        1,
        False,
    )


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("      - name: a\n        logicalType: string\n        requried: true", "requried"),
        ("      - name: a\n        logicalType: text", "logicalType"),
        (
            "      - name: a\n        logicalType: string\n"
            "        logicalTypeOptions: {minimum: 1}",
            "minimum/maximum bounds are supported on integer and number only",
        ),
        (
            "      - name: a\n        logicalType: string\n        quality:\n"
            "          - metric: invalidValues\n            arguments: {validValues: [x]}\n"
            "            mustBe: 5",
            "only `mustBe: 0` is supported",
        ),
        (
            "      - name: a\n        logicalType: string\n      - name: a\n"
            "        logicalType: integer",
            "properties declared twice: a",
        ),
    ],
)
def test_bad_contracts_are_refused_naming_file_and_problem(properties, message):
    with pytest.raises(ContractError) as raised:
        contract_with(properties)
    assert "things.odcs.yaml" in str(raised.value)
    assert message in str(raised.value)


def test_contract_file_named_for_another_table_is_refused(tmp_path: Path):
    (tmp_path / "people.odcs.yaml").write_text(
        MINIMAL.format(properties="      - name: a\n        logicalType: string")
    )
    with pytest.raises(ContractError, match="declares table 'things'"):
        load_contract(tmp_path, "people")


def test_load_contracts_reports_every_broken_file(tmp_path: Path):
    (tmp_path / "a.odcs.yaml").write_text("kind: [")
    (tmp_path / "b.odcs.yaml").write_text("apiVersion: v3.1.0\n")
    found, problems = load_contracts(tmp_path)
    assert set(found) == {"manual_upload", "membership", "changes"}  # shipped with the package
    assert [Path(p.file).name for p in problems] == ["a.odcs.yaml", "b.odcs.yaml"]


def test_committed_docs_match_the_contracts():
    found, _ = load_contracts(CONTRACTS)
    expected = contract_docs([found[name] for name in sorted(found)]) + "\n"
    committed = (REPO / "docs" / "tables.md").read_text(encoding="utf-8")
    assert committed == expected, "regenerate with: segments contracts docs --output docs/tables.md"


OBJECT = """      - name: properties
        logicalType: object
        properties:
          - name: plan
            logicalType: string
          - name: price
            logicalType: number"""


def test_an_object_property_of_the_events_contract_is_a_struct_of_its_fields():
    text = MINIMAL.replace("name: things", "name: events").format(properties=OBJECT)
    contract = parse_contract(text, "events.odcs.yaml")
    column = contract.column("properties")
    assert column.dtype == pl.Struct({"plan": pl.String, "price": pl.Float64})
    assert [f.name for f in column.fields] == ["plan", "price"]
    assert list(contract.objects) == ["properties"]
    assert "| `properties.price` | number |" in contract_docs([contract])


def test_the_repo_events_contract_declares_typed_properties():
    column = load_contract(CONTRACTS, "events").column("properties")
    assert {f.name: f.logical_type for f in column.fields} == {
        "source": "string",
        "plan": "string",
        "product_id": "string",
        "price": "number",
    }


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (OBJECT.replace("logicalType: object", "logicalType: string"), "only a property of"),
        ("      - name: p\n        logicalType: object", "needs nested `properties`"),
        (OBJECT + "\n        required: true", "an object property takes no rules"),
        (
            OBJECT + "\n            logicalTypeOptions: {minimum: 0}",
            "field price: fields of an object take no rules",
        ),
        (
            OBJECT + "\n          - name: inner\n            logicalType: object\n"
            "            properties:\n              - name: x\n                logicalType: string",
            "objects nest one level deep",
        ),
        (OBJECT + "\n          - name: Bad-Name\n            logicalType: string", "must match"),
        (
            OBJECT + "\n          - name: plan\n            logicalType: string",
            "fields declared twice",
        ),
    ],
)
def test_bad_object_properties_are_refused(properties, message):
    text = MINIMAL.replace("name: things", "name: events").format(properties=properties)
    with pytest.raises(ContractError) as raised:
        parse_contract(text, "events.odcs.yaml")
    assert message in str(raised.value)


def test_object_properties_belong_to_the_events_contract_only():
    with pytest.raises(ContractError, match="supported in the events contract only"):
        contract_with(OBJECT)


def test_great_expectations_validates_every_row_without_fingerprinting_the_batch():
    """Great Expectations fingerprints every pandas batch under 1 GB (pandas' hash of every
    value, then md5): three quarters of its time over a batch of events, for a marker of the
    result's metadata nobody reads. The suite's verdicts and failing rows are unchanged."""
    from transforms.contracts.expectations import ContractValidator

    contract = load_contract(CONTRACTS, "events")
    rows = 5_000
    frame = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(rows)],
            "person_id": [f"p{i % 70}" for i in range(rows)],
            "name": ["view"] * rows,
            "timestamp": [None if i == 7 else 1_700_000_000_000_000 + i for i in range(rows)],
            "amount": [-1.0 if i % 1000 == 3 else 1.5 for i in range(rows)],
            "currency": ["EUR" if i != 11 else "JPY" for i in range(rows)],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    ).with_columns(pl.lit(None, dtype=contract.polars_schema()["properties"]).alias("properties"))
    validation = ContractValidator(contract, batch_rows=2_000).validate(frame)
    assert validation.failures == {
        3: ["amount:range"],
        7: ["timestamp:required"],
        11: ["currency:validValues"],
        1003: ["amount:range"],
        2003: ["amount:range"],
        3003: ["amount:range"],
        4003: ["amount:range"],
    }
    assert len(validation.results) == 3  # one document per batch
    for result in validation.results:
        assert "pandas_data_fingerprint" not in result["meta"]["batch_markers"]


def test_range_rules_give_the_same_verdicts_on_every_kind_of_number():
    """Ranges over numbers Great Expectations checks vectorized (numpy) or value by value
    (Arrow): NULLs pass, NaN fails, the bounds are inside, integers beyond 2^53 compare
    exactly."""
    from transforms.contracts.expectations import ContractValidator

    contract = contract_with(
        """      - name: small
        logicalType: integer
        logicalTypeOptions: {minimum: 13, maximum: 120}
      - name: huge
        logicalType: integer
        logicalTypeOptions: {maximum: 9007199254740992}
      - name: amount
        logicalType: number
        logicalTypeOptions: {minimum: 0}
      - name: clean
        logicalType: number
        logicalTypeOptions: {minimum: 0, maximum: 1}"""
    )
    frame = pl.DataFrame(
        {
            "small": [13, 120, None, 12, 121, 50],
            "huge": [2**53, None, 2**53 + 1, 1, -(2**60), 0],
            "amount": [0.0, float("nan"), None, -0.5, 1e300, 2.0],
            "clean": [0.0, 1.0, None, 1.5, -1e-9, 0.5],
        },
        schema={"small": pl.Int64, "huge": pl.Int64, "amount": pl.Float64, "clean": pl.Float64},
    )
    failures = ContractValidator(contract).validate(frame).failures
    assert failures == {
        1: ["amount:range"],
        2: ["huge:range"],
        3: ["small:range", "amount:range", "clean:range"],
        4: ["small:range", "clean:range"],
    }


def test_great_expectations_imports_without_loading_what_only_unused_expectations_need():
    """scipy.stats and altair load on first use, and then work as usual."""
    code = (
        "import sys; import transforms.contracts.expectations as e;"
        " print(sorted(m for m in sys.modules if m.startswith(('scipy.stats.', 'altair.'))));"
        " from scipy import stats; import altair;"
        " print(stats.entropy([0.5, 0.5], [0.5, 0.5]), altair.Chart.__name__,"
        " 'scipy.stats._stats_py' in sys.modules)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown == ["[]", "0.0 Chart True"]
