"""Floor 3: records, dataset versions (commit, diff, split, export, trace) and expectations.

Curation (readers, steps, engines) lives in `keel.curate`. The curation names this package exported
before the split still resolve here, with a DeprecationWarning, for one release.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.data._expectations import Expectations, ValidationReport, load_expectations, validate_version
    from keel.data._hashing import row_hashes
    from keel.data._json_lines import MAX_JSON_DEPTH
    from keel.data._records import RECORD_SCHEMA, make_record, record_id, records_to_table
    from keel.data._version_ops import (
        IdRepeats,
        RecordTrace,
        VersionDiff,
        diff_versions,
        export_version,
        repeated_ids,
        split_assignments,
        split_version,
        to_hf_dataset,
        trace_record,
    )
    from keel.data._versions import (
        DatasetVersion,
        ShardEntry,
        commit_version,
        get_version,
        iter_batches,
        list_datasets,
        list_versions,
        load_version,
        tag_version,
    )

# Each name loads its module on first use (PEP 562): the curation engine reads records through
# keel.data._inputs and _records without paying for expectations, version operations or the store.
_MODULES = {
    **dict.fromkeys(("Expectations", "ValidationReport", "load_expectations", "validate_version"), "_expectations"),
    "row_hashes": "_hashing",
    "MAX_JSON_DEPTH": "_json_lines",
    **dict.fromkeys(("RECORD_SCHEMA", "make_record", "record_id", "records_to_table"), "_records"),
    **dict.fromkeys(
        (
            "IdRepeats",
            "RecordTrace",
            "VersionDiff",
            "diff_versions",
            "export_version",
            "repeated_ids",
            "split_assignments",
            "split_version",
            "to_hf_dataset",
            "trace_record",
        ),
        "_version_ops",
    ),
    **dict.fromkeys(
        (
            "DatasetVersion",
            "ShardEntry",
            "commit_version",
            "get_version",
            "iter_batches",
            "list_datasets",
            "list_versions",
            "load_version",
            "tag_version",
        ),
        "_versions",
    ),
}

__all__ = [
    "MAX_JSON_DEPTH",
    "RECORD_SCHEMA",
    "DatasetVersion",
    "Expectations",
    "IdRepeats",
    "RecordTrace",
    "ShardEntry",
    "ValidationReport",
    "VersionDiff",
    "commit_version",
    "diff_versions",
    "export_version",
    "get_version",
    "iter_batches",
    "list_datasets",
    "list_versions",
    "load_expectations",
    "load_version",
    "make_record",
    "record_id",
    "records_to_table",
    "repeated_ids",
    "row_hashes",
    "split_assignments",
    "split_version",
    "tag_version",
    "to_hf_dataset",
    "trace_record",
    "validate_version",
]

# Names that moved in the keel/curate split (December 2026): old import paths keep working for one release.
# Resolved lazily so that importing keel.data never imports the floor above it.
_MOVED = {
    **dict.fromkeys(
        [
            "CurationReport",
            "GlobalStep",
            "LanguageDetector",
            "LocalEngine",
            "MinHashParams",
            "NearDuplicateIndex",
            "Problem",
            "ProblemReason",
            "Progress",
            "QualityThresholds",
            "RayEngine",
            "Recipe",
            "Step",
            "StepParams",
            "StepResult",
            "StepStats",
            "available_steps",
            "build_steps",
            "detect_format",
            "load_recipe",
            "minhash_signatures",
            "parse_recipe",
            "quality_signals",
            "read_file",
        ],
        "keel.curate",
    ),
    **dict.fromkeys(["PiiDetector", "PiiSpan", "PiiType", "redact"], "keel.govern"),
}


_own_names = lazy_getattr("keel.data", _MODULES)


def __getattr__(name: str) -> Any:
    """Load a name of this package on first use; resolve a name that moved out of keel.data, with a warning."""
    if name in _MODULES:
        return _own_names(name)
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.data' has no attribute {name!r}")
    warnings.warn(
        f"keel.data.{name} moved to {module}.{name}; the old path goes away in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
