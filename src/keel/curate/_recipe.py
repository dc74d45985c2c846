"""Curation recipes: YAML naming inputs, steps with their params, and outputs, validated all at once.

`load_recipe` reports every problem in the file in one `ConfigError`, each with its path
(`steps[2].quality.min_words: …`). Step names resolve through `step_class()`, whose table is the one place
that lists Keel's built-in steps; the engine builds steps from the validated specs.
"""

from __future__ import annotations

import glob
import importlib
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel.core.echo import shown
from keel.core.errors import ConfigError, InputError
from keel.core.settings import read_config_file
from keel.curate._readers import InputFormat, check_encoding, detect_format
from keel.curate._step import Step

__all__ = ["Recipe", "ResolvedInput", "available_steps", "build_steps", "load_recipe", "parse_recipe", "step_class"]


# Every step a recipe may name: its module and class. A recipe loads only the modules of the steps it names
# (near_dedup alone does not load the PII detector, which loads keel.govern, nor fastText or ftfy).
_STEPS = {
    "normalize": ("_basic_steps", "NormalizeStep"),
    "language": ("_language_step", "LanguageStep"),
    "length": ("_basic_steps", "LengthStep"),
    "quality": ("_quality_step", "QualityStep"),
    "blocklist": ("_basic_steps", "BlocklistStep"),
    "exact_dedup": ("_basic_steps", "ExactDedupStep"),
    "near_dedup": ("_near_dedup", "NearDedupStep"),
    "pii": ("_pii_step", "PiiStep"),
    "decontaminate": ("_decontaminate", "DecontaminateStep"),
    "paraphrase": ("_augment_llm", "ParaphraseStep"),
    "back_translate": ("_augment_llm", "BackTranslateStep"),
    "synonym": ("_augment_words", "SynonymStep"),
    "eda": ("_augment_words", "EdaStep"),
    "dedup_against_parent": ("_augment_lineage", "DedupAgainstParentStep"),
}


_WORKSPACE_STEPS = frozenset({"paraphrase", "back_translate"})  # steps with a `workspace` parameter


def step_class(name: str) -> type[Step] | None:
    """The class of the step a recipe calls `name` (its module imported now), or None if there is none."""
    where = _STEPS.get(name)
    if where is None:
        return None
    cls: type[Step] = getattr(importlib.import_module(f"keel.curate.{where[0]}"), where[1])
    return cls


def available_steps() -> dict[str, type[Step]]:
    """Every step a recipe may name, by name (importing every step's module)."""
    return {name: cls for name in _STEPS if (cls := step_class(name)) is not None}


@dataclass(frozen=True)
class ResolvedInput:
    """One input file with how to read it."""

    path: Path
    format: InputFormat
    text_field: str
    id_field: str | None
    extractor: str | None = None
    encoding: str = "utf-8"


class InputSpec(BaseModel):
    """One `inputs:` entry: a path or glob, relative to the recipe file."""

    model_config = ConfigDict(extra="forbid")

    path: str
    format: InputFormat | None = None
    text_field: str = "text"
    id_field: str | None = None
    extractor: Literal["trafilatura", "resiliparse"] | None = None
    encoding: str = Field("utf-8", description="Text encoding of JSONL, CSV and text files (e.g. latin-1, cp1252).")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            return check_encoding(encoding)
        except InputError as exc:
            raise ValueError(exc.message) from None


class Recipe(BaseModel):
    """A validated curation recipe.

    Examples:
        >>> recipe = load_recipe("recipe.yaml")  # doctest: +SKIP
        >>> [name for name, _ in recipe.step_specs()]  # doctest: +SKIP
        ['normalize', 'exact_dedup']
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[InputSpec] = Field(min_length=1)
    output: Path
    steps: list[dict[str, dict[str, Any] | None]] = Field(default_factory=list)
    shard_size: int = Field(10_000, ge=1, description="Records per shard: the unit of parallel work and resuming.")
    keep_dropped: bool = Field(False, description="Write dropped records under output/dropped/<step>/ for audit.")
    warn_drop_share: float = Field(
        0.2, ge=0, le=1, description="Warn when one drop reason of a step removes more than this share of its input."
    )
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("steps")
    @classmethod
    def _one_key_each(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, entry in enumerate(steps):
            if len(entry) != 1:
                raise ValueError(f"steps[{i}] must be one mapping `name: {{params}}`; got keys {sorted(entry)}")
        return steps

    @property
    def output_dir(self) -> Path:
        """Where outputs go (absolute)."""
        return self.output if self.output.is_absolute() else (self.base_dir / self.output).resolve()

    def step_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The steps as (name, params) pairs."""
        return [(name, params or {}) for entry in self.steps for name, params in entry.items()]

    def with_workspace(self, workspace: Path) -> Recipe:
        """This recipe with `workspace` given to every model step that names none (its cache and local models).

        Steps run in worker processes that find the workspace from KEEL_WORKSPACE or the cwd; a `-w` chosen
        on the command line reaches them only through their parameters.
        """
        steps = []
        for name, params in self.step_specs():
            if name in _WORKSPACE_STEPS and params.get("workspace") is None:
                params = {**params, "workspace": str(workspace)}
            steps.append({name: params})
        return self.model_copy(update={"steps": steps})

    def fingerprint_data(self) -> dict[str, Any]:
        """What makes two runs the same run (for resuming): the recipe minus where it lives."""
        return self.model_dump(mode="json", exclude={"base_dir"})

    def resolve_inputs(self) -> list[ResolvedInput]:
        """Expand globs (sorted, so runs are deterministic) and settle each file's format."""
        resolved = []
        for spec in self.inputs:
            pattern = spec.path if Path(spec.path).is_absolute() else str(self.base_dir / spec.path)
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"input {shown(spec.path)} matches no files (looked for {pattern})")
            for path in matches:
                fmt = spec.format or detect_format(path)
                resolved.append(
                    ResolvedInput(path.resolve(), fmt, spec.text_field, spec.id_field, spec.extractor, spec.encoding)
                )
        return resolved


def _step_errors(recipe: Recipe) -> list[str]:
    errors = []
    for i, (name, params) in enumerate(recipe.step_specs()):
        cls = step_class(name)
        if cls is None:
            errors.append(f"steps[{i}]: unknown step {name!r}; known steps: {', '.join(sorted(_STEPS))}")
            continue
        missing = [package for package in cls.requires if find_spec(package) is None]
        if missing:
            errors.append(f"steps[{i}].{name}: needs {', '.join(missing)}; `pip install {' '.join(missing)}`")
        try:
            cls.Params.model_validate(params)
        except ValidationError as exc:
            errors += [_located(f"steps[{i}].{name}", err) for err in exc.errors()]
    return errors


def _located(prefix: str, err: Any) -> str:
    where = ".".join(str(part) for part in (prefix, *err["loc"]))
    return f"{where}: {err['msg']}" + (f" (got {shown(err['input'])})" if "input" in err and err["loc"] else "")


def parse_recipe(data: Any, base_dir: Path, where: str) -> Recipe:
    """Validate recipe data, raising one `ConfigError` that lists every problem with its path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping with inputs, output and steps; found {type(data).__name__}")
    try:
        recipe = Recipe.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = [_located("", err).lstrip(".") for err in exc.errors()]
        raise ConfigError(f"{where} has {len(problems)} problem(s):\n  " + "\n  ".join(problems)) from None
    problems = _step_errors(recipe)
    if problems:
        raise ConfigError(f"{where} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; relative paths in it are relative to the file.

    Raises:
        ConfigError: The file is missing, a directory, not UTF-8, not YAML, not a mapping, or has any
            invalid entry (all are listed).
    """
    file = Path(path)
    data = read_config_file(file, "recipe", holds="a mapping with inputs, output and steps")
    return parse_recipe(data, file.resolve().parent, str(file))


def build_steps(specs: list[tuple[str, dict[str, Any]]] | list[list[Any]]) -> list[Step]:
    """Instantiate steps from (name, params) specs that `parse_recipe` already validated."""
    steps = []
    for name, params in specs:
        cls = step_class(name)
        if cls is None:
            raise InputError(f"expected a known step name; got {name!r}", hint="validate the recipe with load_recipe")
        steps.append(cls(cls.Params.model_validate(params)))
    return steps
