"""Floor 3: records, readers, curation steps and the engines that run recipes of them."""

from keel.data._engine import CurationReport, LocalEngine, Progress
from keel.data._langid import LanguageDetector
from keel.data._minhash import MinHashParams, NearDuplicateIndex, minhash_signatures
from keel.data._pii import PiiDetector, PiiSpan, PiiType, redact
from keel.data._quality import QualityThresholds, quality_signals
from keel.data._readers import Problem, ProblemReason, detect_format, read_file
from keel.data._recipe import Recipe, available_steps, build_steps, load_recipe, parse_recipe
from keel.data._records import RECORD_SCHEMA, make_record, record_id, records_to_table
from keel.data._step import GlobalStep, Step, StepParams, StepResult, StepStats

__all__ = [
    "RECORD_SCHEMA",
    "CurationReport",
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
    "Recipe",
    "Step",
    "StepParams",
    "StepResult",
    "StepStats",
    "available_steps",
    "build_steps",
    "detect_format",
    "load_recipe",
    "make_record",
    "minhash_signatures",
    "parse_recipe",
    "quality_signals",
    "read_file",
    "record_id",
    "records_to_table",
    "redact",
]
