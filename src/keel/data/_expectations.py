"""`keel data validate REF --expect FILE`: check a version against written expectations, all at once.

An expectations file (YAML):

    schema: {id: string, text: string, lang: string}   # columns that must exist, with Arrow types
    unique_ids: true
    not_null: [text]
    length: {text: {min: 20, max: 100000}}              # characters
    rows: {min: 100}
    language: {column: lang, min_share: {en: 0.9}}
    no_pii: [text]                                      # no PII spans found by the pii step's detector
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.core.errors import ConfigError
from keel.core.settings import read_config_file
from keel.data._versions import DatasetVersion, get_version, load_version
from keel.store import Store

__all__ = ["Expectations", "ValidationReport", "load_expectations", "validate_version"]


class _Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class _Language(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = "lang"
    min_share: dict[str, float] = Field(default_factory=dict)


class Expectations(BaseModel):
    """What a dataset version must satisfy; every key is optional."""

    model_config = ConfigDict(extra="forbid")
    schema_: dict[str, str] = Field(default_factory=dict, alias="schema")
    unique_ids: bool = False
    not_null: list[str] = Field(default_factory=list)
    length: dict[str, _Bounds] = Field(default_factory=dict)
    rows: _Bounds = Field(default_factory=_Bounds)
    language: _Language | None = None
    no_pii: list[str] = Field(default_factory=list)


def load_expectations(path: str | os.PathLike[str]) -> Expectations:
    """Read and check an expectations file, reporting every problem with its path in the file."""
    keys = "schema, unique_ids, not_null, length, rows, language or no_pii"
    raw = read_config_file(path, "expectations file", holds=f"a mapping of expectations ({keys})")
    try:
        return Expectations.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


@dataclass
class ValidationReport:
    """Every failed expectation of one version (empty: all passed)."""

    ref: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        """Whether every expectation held."""
        return not self.failures

    def fail(self, check: str, message: str, **details: Any) -> None:
        """Add one failure."""
        self.failures.append({"check": check, "message": message, **details})

    def to_json(self) -> dict[str, Any]:
        """The report as `--json` prints it."""
        return {"ref": self.ref, "ok": self.ok, "checked": self.checked, "failures": self.failures}


def _check_schema(report: ValidationReport, schema: pa.Schema, expected: dict[str, str]) -> None:
    for name, kind in expected.items():
        report.checked += 1
        if name not in schema.names:
            report.fail("schema", f"expected a column {name!r} of type {kind}; it is missing", column=name)
        elif str(schema.field(name).type) != kind:
            found = str(schema.field(name).type)
            report.fail("schema", f"expected column {name!r} to be {kind}; found {found}", column=name)


def _check_columns(report: ValidationReport, table: pa.Table, exp: Expectations) -> None:
    for name in exp.not_null:
        report.checked += 1
        if name in table.column_names and (nulls := table.column(name).null_count):
            report.fail("not_null", f"expected no nulls in {name!r}; found {nulls}", column=name, count=nulls)
    for name, bounds in exp.length.items():
        report.checked += 1
        if name not in table.column_names:
            continue
        lengths = pc.utf8_length(table.column(name))
        for side, limit, op in (("min", bounds.min, pc.less), ("max", bounds.max, pc.greater)):
            if limit is not None and (bad := int(pc.sum(op(lengths, limit)).as_py() or 0)):
                report.fail(
                    "length", f"expected {name!r} {side} length {limit}; {bad} rows break it", column=name, count=bad
                )


def _check_language(report: ValidationReport, table: pa.Table, lang: _Language) -> None:
    report.checked += 1
    if lang.column not in table.column_names:
        report.fail("language", f"expected a language column {lang.column!r}; it is missing (run the language step)")
        return
    total = max(table.num_rows, 1)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(table.column(lang.column)).to_pylist()}
    for code, minimum in lang.min_share.items():
        share = counts.get(code, 0) / total
        if share < minimum:
            report.fail(
                "language", f"expected at least {minimum:.0%} {code!r}; found {share:.1%}", lang=code, share=share
            )


def _check_pii(report: ValidationReport, table: pa.Table, columns: list[str]) -> None:
    from keel.govern._pii_detect import PiiDetector

    detector = PiiDetector()
    for name in columns:
        report.checked += 1
        if name not in table.column_names:
            report.fail("no_pii", f"expected a text column {name!r} to scan for PII; it is missing", column=name)
            continue
        ids = table.column("id").to_pylist()
        texts = [t or "" for t in table.column(name).to_pylist()]
        found = detector.detect_many(texts)
        hits = [(i, [s.type for s in spans]) for i, spans in zip(ids, found, strict=True) if spans]
        if hits:
            report.fail(
                "no_pii",
                f"expected no PII in {name!r}; found spans in {len(hits)} records",
                column=name,
                count=len(hits),
                examples=[{"id": i, "types": sorted(set(map(str, t)))} for i, t in hits[:5]],
            )


def validate_version(store: Store, ref: str | DatasetVersion, expectations: Expectations) -> ValidationReport:
    """Check every expectation against a version; collect every failure instead of stopping at the first."""
    version = ref if isinstance(ref, DatasetVersion) else get_version(store, ref)
    report = ValidationReport(version.ref)
    _check_schema(report, version.schema, expectations.schema_)
    table = load_version(store, version)
    for side, limit in (("min", expectations.rows.min), ("max", expectations.rows.max)):
        if limit is not None:
            report.checked += 1
            if (side == "min" and table.num_rows < limit) or (side == "max" and table.num_rows > limit):
                report.fail("rows", f"expected {side} {limit} rows; found {table.num_rows}")
    if expectations.unique_ids:
        report.checked += 1
        duplicates = table.num_rows - len(pc.unique(table.column("id")))
        if duplicates:
            report.fail("unique_ids", f"expected unique ids; {duplicates} rows repeat an id", count=duplicates)
    _check_columns(report, table, expectations)
    if expectations.language is not None:
        _check_language(report, table, expectations.language)
    _check_pii(report, table, expectations.no_pii)
    return report
