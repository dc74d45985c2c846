"""Floor 3: records, readers, curation steps and the engines that run recipes of them."""

from keel.data._engine import CurationReport, LocalEngine, Progress
from keel.data._expectations import Expectations, ValidationReport, load_expectations, validate_version
from keel.data._hashing import row_hashes
from keel.data._langid import LanguageDetector
from keel.data._minhash import MinHashParams, NearDuplicateIndex, minhash_signatures
from keel.data._pii import PiiDetector, PiiSpan, PiiType, redact
from keel.data._quality import QualityThresholds, quality_signals
from keel.data._ray_engine import RayEngine
from keel.data._readers import Problem, ProblemReason, detect_format, read_file
from keel.data._recipe import Recipe, available_steps, build_steps, load_recipe, parse_recipe
from keel.data._records import RECORD_SCHEMA, make_record, record_id, records_to_table
from keel.data._step import GlobalStep, Step, StepParams, StepResult, StepStats
from keel.data._version_ops import (
    RecordTrace,
    VersionDiff,
    diff_versions,
    export_version,
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

__all__ = [
    "RECORD_SCHEMA",
    "CurationReport",
    "DatasetVersion",
    "Expectations",
    "GlobalStep",
    "LanguageDetector",
    "LocalEngine",
    "MinHashParams",
    "NearDuplicateIndex",
    "PiiDetector",
    "PiiSpan",
    "PiiType",
    "Problem",
    "ProblemReason",
    "Progress",
    "QualityThresholds",
    "RayEngine",
    "Recipe",
    "RecordTrace",
    "ShardEntry",
    "Step",
    "StepParams",
    "StepResult",
    "StepStats",
    "ValidationReport",
    "VersionDiff",
    "available_steps",
    "build_steps",
    "commit_version",
    "detect_format",
    "diff_versions",
    "export_version",
    "get_version",
    "iter_batches",
    "list_datasets",
    "list_versions",
    "load_expectations",
    "load_recipe",
    "load_version",
    "make_record",
    "minhash_signatures",
    "parse_recipe",
    "quality_signals",
    "read_file",
    "record_id",
    "records_to_table",
    "redact",
    "row_hashes",
    "split_assignments",
    "split_version",
    "tag_version",
    "to_hf_dataset",
    "trace_record",
    "validate_version",
]
