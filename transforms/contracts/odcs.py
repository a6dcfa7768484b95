"""Data contracts (ODCS v3.1) and everything derived from them.

A contract file `<contracts folder>/<table>.odcs.yaml` is the single source of a table's shape:
the Polars schema, the Great Expectations suite (`transforms.contracts.expectations`) and the docs
(`contract_docs`) are all computed from it. Nothing in the code names a workspace attribute.

A workspace's folder (`data_contracts/` in this repository) declares its inputs, people and
events. The tables the pipeline writes and the upload files it reads have a shape fixed by the
code: their contracts ship in this package (`OUTPUT_TABLES`) and are used wherever the folder has
no file of that name.

Supported subset of ODCS v3.1, per property: `logicalType` (string, integer, number, boolean,
date, timestamp), `required`, `unique`, `primaryKey`, `logicalTypeOptions` (`minimum`,
`maximum`, `exclusiveMinimum`, `exclusiveMaximum` on numbers; `pattern`, `minLength`,
`maxLength` on strings), `partitioned` (a Hive partition column: the folder `<name>=<value>/`,
not a column of the Parquet files) and `quality` rules of type library with metric `nullValues`,
`invalidValues` (`arguments.validValues` or `arguments.pattern`) or `duplicateValues`, each
with `mustBe: 0`. Every such rule is row-level: a row that breaks it is quarantined.

A property of `logicalType: object` (in the events contract only) holds JSON objects: its
nested `properties` declare the fields, one level deep, each with a `logicalType` other than
object and no rules of its own (an object property has none either). Ingest reads the JSON
text (or a Parquet struct) into a struct of those typed fields (`transforms.contracts.coerce`),
and segment predicates address a field with a dot: `properties.plan`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from transforms.errors import ContractError

LogicalType = Literal["string", "integer", "number", "boolean", "date", "timestamp", "object"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us", "UTC"),
}
CONTRACT_SUFFIX = ".odcs.yaml"
OBJECT_TABLES = ("events",)
"""The tables whose contract may declare `logicalType: object` properties."""
FIELD_NAME = r"[a-z_][a-z0-9_]*"
"""The name of a field of an object property: what a predicate writes after the dot."""


class _Odcs(BaseModel):
    """ODCS objects refuse unknown keys, as the standard's JSON schema does."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class QualityRule(_Odcs):
    type: Literal["library"] = "library"
    metric: Literal["nullValues", "invalidValues", "duplicateValues"]
    arguments: dict[str, Any] = Field(default_factory=dict)
    mustBe: float | int = 0
    id: str | None = None
    name: str | None = None
    description: str | None = None
    dimension: str | None = None
    severity: str | None = None
    unit: str | None = None
    businessImpact: str | None = None

    @model_validator(mode="after")
    def _row_level_only(self) -> QualityRule:
        if self.mustBe != 0:
            raise ValueError(
                "only `mustBe: 0` is supported: every rule is row-level and a row breaking it"
                " is quarantined"
            )
        if self.metric == "invalidValues":
            unknown = set(self.arguments) - {"validValues", "pattern"}
            if unknown or not self.arguments:
                raise ValueError(
                    "invalidValues needs `arguments.validValues: [...]` or"
                    f" `arguments.pattern: <regex>` (got {sorted(self.arguments) or 'none'})"
                )
        return self


class LogicalTypeOptions(_Odcs):
    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | None = None
    exclusiveMaximum: float | None = None
    pattern: str | None = None
    minLength: int | None = Field(None, ge=0)
    maxLength: int | None = Field(None, ge=0)
    format: str | None = None
    timezone: bool | None = None
    defaultTimezone: str | None = None


class Property(_Odcs):
    name: str
    logicalType: LogicalType
    physicalType: str | None = None
    description: str | None = None
    businessName: str | None = None
    required: bool = False
    unique: bool = False
    primaryKey: bool = False
    primaryKeyPosition: int = -1
    partitioned: bool = False
    partitionKeyPosition: int = -1
    classification: str | None = None
    examples: list[Any] | None = None
    tags: list[str] | None = None
    customProperties: list[dict[str, Any]] | None = None
    logicalTypeOptions: LogicalTypeOptions = Field(default_factory=LogicalTypeOptions)
    quality: list[QualityRule] = Field(default_factory=list)
    properties: list[Property] | None = None
    """The fields of an `object` property (one level deep)."""

    @model_validator(mode="after")
    def _options_fit_type(self) -> Property:
        if self.logicalType == "object" or self.properties is not None:
            _check_object(self)
        opts = self.logicalTypeOptions
        numeric = (opts.minimum, opts.maximum, opts.exclusiveMinimum, opts.exclusiveMaximum)
        if any(v is not None for v in numeric) and self.logicalType not in ("integer", "number"):
            raise ValueError("minimum/maximum bounds are supported on integer and number only")
        textual = (opts.pattern, opts.minLength, opts.maxLength)
        if any(v is not None for v in textual) and self.logicalType != "string":
            raise ValueError("pattern/minLength/maxLength apply to string properties only")
        return self


def _has_rules(prop: Property) -> bool:
    opts = prop.logicalTypeOptions.model_dump(exclude_none=True)
    keys = prop.required or prop.unique or prop.primaryKey or prop.partitioned
    return bool(keys or prop.quality or opts)


def _check_object(prop: Property) -> None:
    """An object property: typed fields, one level deep, no rules on it or on its fields."""
    if prop.logicalType != "object":
        raise ValueError("only a property of logicalType object may have nested properties")
    if not prop.properties:
        raise ValueError(
            "an object property needs nested `properties`, one per field, each with a logicalType"
        )
    if _has_rules(prop):
        raise ValueError(
            "an object property takes no rules (required, unique, key, partition, quality,"
            " logicalTypeOptions)"
        )
    names = [f.name for f in prop.properties]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"fields declared twice: {', '.join(duplicated)}")
    for nested in prop.properties:
        if nested.logicalType == "object":
            raise ValueError(
                f"field {nested.name}: objects nest one level deep (declare its fields on"
                f" {prop.name})"
            )
        if not re.fullmatch(FIELD_NAME, nested.name):
            raise ValueError(
                f"field name {nested.name!r} must match {FIELD_NAME} (predicates write"
                f" {prop.name}.<field>)"
            )
        if _has_rules(nested):
            raise ValueError(
                f"field {nested.name}: fields of an object take no rules (a value of the wrong"
                " type quarantines its row; nothing else is checked)"
            )


class SchemaObject(_Odcs):
    name: str
    physicalName: str | None = None
    physicalType: str | None = None
    logicalType: Literal["object"] = "object"
    description: str | None = None
    businessName: str | None = None
    tags: list[str] | None = None
    customProperties: list[dict[str, Any]] | None = None
    properties: list[Property] = Field(min_length=1)


class ContractDocument(_Odcs):
    apiVersion: Literal["v3.1.0", "v3.0.2"]
    kind: Literal["DataContract"]
    id: str
    version: str
    status: str
    name: str | None = None
    domain: str | None = None
    tenant: str | None = None
    tags: list[str] | None = None
    description: dict[str, Any] | None = None
    customProperties: list[dict[str, Any]] | None = None
    schema_: list[SchemaObject] = Field(alias="schema", min_length=1, max_length=1)


@dataclass(frozen=True)
class Column:
    """One column as the pipeline uses it, flattened from an ODCS property."""

    name: str
    logical_type: str
    required: bool = False
    unique: bool = False
    primary_key: bool = False
    partition: bool = False
    description: str = ""
    valid_values: tuple[Any, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    strict_minimum: bool = False
    strict_maximum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    fields: tuple[Column, ...] = ()
    """The typed fields of an `object` column."""

    @property
    def dtype(self) -> pl.DataType:
        if self.logical_type == "object":
            return pl.Struct({f.name: f.dtype for f in self.fields})
        return POLARS_TYPES[self.logical_type]

    def field(self, name: str) -> Column:
        for declared in self.fields:
            if declared.name == name:
                return declared
        raise KeyError(name)


@dataclass(frozen=True)
class TableContract:
    """A table's columns and rules, as declared by its contract file."""

    table: str
    file: str
    description: str
    columns: tuple[Column, ...]
    version: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def primary_key(self) -> str | None:
        keys = [c.name for c in self.columns if c.primary_key]
        return keys[0] if keys else None

    @property
    def objects(self) -> dict[str, Column]:
        """The `object` columns, by name."""
        return {c.name: c for c in self.columns if c.logical_type == "object"}

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})


def _column(prop: Property) -> Column:
    opts = prop.logicalTypeOptions
    valid_values: tuple[Any, ...] | None = None
    pattern = opts.pattern
    required, unique = prop.required, prop.unique or prop.primaryKey
    for rule in prop.quality:
        if rule.metric == "nullValues":
            required = True
        elif rule.metric == "duplicateValues":
            unique = True
        else:
            if "validValues" in rule.arguments:
                valid_values = tuple(rule.arguments["validValues"])
            if "pattern" in rule.arguments:
                pattern = str(rule.arguments["pattern"])
    minimum = opts.exclusiveMinimum if opts.exclusiveMinimum is not None else opts.minimum
    maximum = opts.exclusiveMaximum if opts.exclusiveMaximum is not None else opts.maximum
    return Column(
        name=prop.name,
        logical_type=prop.logicalType,
        required=required or prop.primaryKey,
        unique=unique,
        primary_key=prop.primaryKey,
        partition=prop.partitioned,
        description=(prop.description or "").strip(),
        valid_values=valid_values,
        pattern=pattern,
        minimum=minimum,
        maximum=maximum,
        strict_minimum=opts.exclusiveMinimum is not None,
        strict_maximum=opts.exclusiveMaximum is not None,
        min_length=opts.minLength,
        max_length=opts.maxLength,
        fields=tuple(_column(f) for f in prop.properties or ()),
    )


def _problems(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  at {where}: {err['msg']}")
    return "\n".join(lines)


def parse_contract(text: str, file: str) -> TableContract:
    """Parse one contract document; `file` names it in errors."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(f"not valid YAML: {exc}", file=file) from exc
    if not isinstance(raw, dict):
        raise ContractError("expected an ODCS document (a mapping)", file=file)
    try:
        doc = ContractDocument.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(
            "not a contract this project can use:\n" + _problems(exc),
            file=file,
            hint="the README's section 'Data contracts' lists the supported subset of ODCS v3.1",
        ) from exc
    obj = doc.schema_[0]
    names = [p.name for p in obj.properties]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ContractError(f"properties declared twice: {', '.join(duplicated)}", file=file)
    objects = [p.name for p in obj.properties if p.logicalType == "object"]
    if objects and obj.name not in OBJECT_TABLES:
        raise ContractError(
            f"{', '.join(objects)}: logicalType object is supported in the"
            f" {', '.join(OBJECT_TABLES)} contract only (event properties)",
            file=file,
            hint="declare each attribute as a property of its own",
        )
    return TableContract(
        table=obj.name,
        file=file,
        description=(obj.description or "").strip(),
        columns=tuple(_column(p) for p in obj.properties),
        version=doc.version,
    )


OUTPUT_CONTRACTS = Path(__file__).parent
"""Where the contracts of `OUTPUT_TABLES` ship: `<table>.odcs.yaml` beside this module."""
OUTPUT_TABLES = ("changes", "manual_upload", "membership")
"""The tables the pipeline writes and the upload files it reads: the code fixes their columns."""


def _contract_path(folder: str | Path, table: str) -> Path:
    """`<folder>/<table>.odcs.yaml`, or the packaged contract of an output table the folder has
    no file for."""
    path = Path(folder) / f"{table}{CONTRACT_SUFFIX}"
    if not path.is_file() and table in OUTPUT_TABLES:
        return OUTPUT_CONTRACTS / path.name
    return path


def load_contract(folder: str | Path, table: str) -> TableContract:
    """The contract of `table` from `<folder>/<table>.odcs.yaml`, or for a table the pipeline
    writes from the package when the folder has none."""
    path = _contract_path(folder, table)
    if not path.is_file():
        raise ContractError(
            f"no contract for table '{table}'",
            file=str(path),
            hint=f"create {path.name} in the contracts folder (or point --contracts elsewhere)",
        )
    contract = parse_contract(path.read_text(encoding="utf-8"), str(path))
    if contract.table != table:
        raise ContractError(
            f"declares table '{contract.table}' but the file is named for '{table}'",
            file=str(path),
            hint=f"rename the schema object to '{table}' or the file to"
            f" '{contract.table}{CONTRACT_SUFFIX}'",
        )
    return contract


def load_contracts(folder: str | Path) -> tuple[dict[str, TableContract], list[ContractError]]:
    """Every contract in `folder` and of the tables the pipeline writes, and every problem found
    (all files are read)."""
    contracts: dict[str, TableContract] = {}
    problems: list[ContractError] = []
    in_folder = [
        p.name.removesuffix(CONTRACT_SUFFIX) for p in Path(folder).glob(f"*{CONTRACT_SUFFIX}")
    ]
    for table in sorted({*in_folder, *OUTPUT_TABLES}):
        try:
            contracts[table] = load_contract(folder, table)
        except ContractError as exc:
            problems.append(exc)
    return contracts, problems


def _rules_text(col: Column) -> str:
    rules = []
    if col.partition:
        rules.append(f"Hive partition: the `{col.name}=D/` folder, not stored in the Parquet files")
    elif col.required:
        rules.append("not null")
    if col.unique:
        rules.append("unique")
    if col.valid_values is not None:
        rules.append("one of " + ", ".join(f"`{v}`" for v in col.valid_values))
    if col.pattern:
        rules.append(f"matches `{col.pattern}`")
    if col.minimum is not None:
        rules.append(f"{'>' if col.strict_minimum else '>='} {col.minimum:g}")
    if col.maximum is not None:
        rules.append(f"{'<' if col.strict_maximum else '<='} {col.maximum:g}")
    if col.min_length is not None or col.max_length is not None:
        rules.append(f"length {col.min_length or 0}..{col.max_length or ''}")
    return "; ".join(rules)


READING_TABLES = Path(__file__).with_name("reading_tables.md")
"""How consumers read the published tables: the part of the reference no contract holds."""


def contract_docs(contracts: list[TableContract]) -> str:
    """Markdown reference of the tables: how to read them, then each table's columns from its
    contract."""
    out = [
        "# Tables",
        "",
        "Generated by `segments contracts docs` from the workspace's contracts folder",
        "(`contracts` in `segments.yaml`; `data_contracts/` in this repository), the contracts of",
        "the tables the pipeline writes, which ship with it (`transforms/contracts/*.odcs.yaml`),",
        "and `transforms/contracts/reading_tables.md`; do not edit by hand.",
        "",
        READING_TABLES.read_text(encoding="utf-8"),
    ]
    for contract in contracts:
        out += [f"## `{contract.table}`", "", contract.description, ""]
        out += ["| column | type | rules | description |", "| --- | --- | --- | --- |"]
        for col in contract.columns:
            key = " (primary key)" if col.primary_key else " (partition)" if col.partition else ""
            desc = " ".join(col.description.split())
            out.append(f"| `{col.name}`{key} | {col.logical_type} | {_rules_text(col)} | {desc} |")
            for nested in col.fields:
                text = " ".join(nested.description.split())
                rules = "a JSON value of this type, or null"
                out.append(
                    f"| `{col.name}.{nested.name}` | {nested.logical_type} | {rules} | {text} |"
                )
        out.append("")
    return "\n".join(out)
