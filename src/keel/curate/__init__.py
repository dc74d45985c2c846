"""Floor 4: curation: readers, steps (normalise, language, quality, dedup, PII) and the engines that run recipes.

Reads raw files into records (`keel.data` owns records and dataset versions), runs a recipe of steps over
them on the local engine (a process pool) or on Ray Data (`keel.curate.ray`), and commits the output as a
dataset version with lineage (`curate`).
"""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.curate._engine import CurationReport, LocalEngine, Progress
    from keel.curate._explain import DropExplanation, explain_record
    from keel.curate._langid import LanguageDetector
    from keel.curate._minhash import MinHashParams, NearDuplicateIndex, minhash_signatures
    from keel.curate._problems import Problem, ProblemReason
    from keel.curate._quality import QualityThresholds, quality_signals
    from keel.curate._readers import detect_format, read_file
    from keel.curate._recipe import Recipe, available_steps, build_steps, load_recipe, parse_recipe
    from keel.curate._run import CurationResult, curate, source_node
    from keel.curate._step import GlobalStep, Step, StepParams, StepResult, StepStats
    from keel.curate._synthesize import SynthesisReport, SynthesizeOptions, parse_generation, synthesize
    from keel.curate.ray import RayEngine

# Each name loads its module on first use (PEP 562): `keel curate explain` does not load the engines, and
# `from keel.curate import LocalEngine` does not load the store and registry that `curate` commits with.
_MODULES = {
    **dict.fromkeys(("CurationReport", "LocalEngine", "Progress"), "_engine"),
    **dict.fromkeys(("DropExplanation", "explain_record"), "_explain"),
    "LanguageDetector": "_langid",
    **dict.fromkeys(("MinHashParams", "NearDuplicateIndex", "minhash_signatures"), "_minhash"),
    **dict.fromkeys(("Problem", "ProblemReason"), "_problems"),
    **dict.fromkeys(("QualityThresholds", "quality_signals"), "_quality"),
    **dict.fromkeys(("detect_format", "read_file"), "_readers"),
    **dict.fromkeys(("Recipe", "available_steps", "build_steps", "load_recipe", "parse_recipe"), "_recipe"),
    **dict.fromkeys(("CurationResult", "curate", "source_node"), "_run"),
    **dict.fromkeys(("GlobalStep", "Step", "StepParams", "StepResult", "StepStats"), "_step"),
    **dict.fromkeys(("SynthesisReport", "SynthesizeOptions", "parse_generation", "synthesize"), "_synthesize"),
    "RayEngine": "ray",
}


__getattr__ = lazy_getattr("keel.curate", _MODULES)


__all__ = [
    "CurationReport",
    "CurationResult",
    "DropExplanation",
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
    "SynthesisReport",
    "SynthesizeOptions",
    "available_steps",
    "build_steps",
    "curate",
    "detect_format",
    "explain_record",
    "load_recipe",
    "minhash_signatures",
    "parse_generation",
    "parse_recipe",
    "quality_signals",
    "read_file",
    "source_node",
    "synthesize",
]
