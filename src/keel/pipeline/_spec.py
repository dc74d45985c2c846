"""`pipeline.yaml`: named stages (a Keel operation or a shell command), references in and out, params.

`load_pipeline` validates the whole file at once and raises one `ConfigError` listing every problem with its
path (`stages.train.with.config: …`, `stages.gate.inputs[1]: …`). The DAG comes from the references: a stage
that reads `dataset:acme-sft` runs after the stage whose outputs name `dataset:acme-sft`; `needs:` adds an
order no reference carries (a gate before the alias it allows). This module knows no database: resolving
references to content digests is `_resolve.py`, running stages is `_engine.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.core.echo import shown
from keel.core.errors import ConfigError, InputError
from keel.core.settings import read_config_file
from keel.pipeline._ops import OPERATIONS, file_args

__all__ = [
    "KINDS",
    "Pipeline",
    "Reference",
    "Stage",
    "load_pipeline",
    "parse_pipeline",
    "parse_reference",
    "parse_sets",
]

KINDS = ("dataset", "model", "index", "prompt", "deployment")
"""The Keel objects a reference may name; any other string is a path relative to the pipeline file."""

_PARAM = re.compile(r"\$\{params\.([A-Za-z_][A-Za-z0-9_.-]*)\}")
_VERSION = re.compile(r"v[0-9]+")
_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_REF = re.compile(r"(dataset|model|index|prompt|deployment):([A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:@([A-Za-z0-9_-]+))?")


@dataclass(frozen=True, slots=True)
class Reference:
    """One input or output: a Keel object (`dataset:acme-kb@latest`) or a path (kind `path`)."""

    kind: str
    name: str
    version: str | None = None  # `v3`, an alias, `latest`, or None; for a path, None

    @property
    def key(self) -> str:
        """What the DAG matches on: kind and name (`dataset:acme-kb`), with an alias (`model:chat@production`).

        A version number or `latest` is not part of it: `model:chat@latest` reads what makes `model:chat`,
        while `model:chat@production` reads what moves the alias.
        """
        if self.version and self.version != "latest" and not _VERSION.fullmatch(self.version):
            return f"{self.kind}:{self.name}@{self.version}"
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        if self.kind == "path":
            return self.name
        return f"{self.kind}:{self.name}@{self.version}" if self.version else f"{self.kind}:{self.name}"


def parse_reference(text: str, base_dir: Path | None = None) -> Reference:
    """Parse `KIND:NAME[@VERSION]`, or a path (made absolute against `base_dir`).

    Examples:
        >>> parse_reference("dataset:acme-kb@latest")
        Reference(kind='dataset', name='acme-kb', version='latest')
        >>> parse_reference("model:chat").key
        'model:chat'
    """
    kind, sep, _ = text.partition(":")
    if sep and kind in KINDS:
        match = _REF.fullmatch(text)
        if match is None:
            raise InputError(
                f"expected {kind}:NAME or {kind}:NAME@VERSION (letters, digits, '.', '_', '-'); got {shown(text)}"
            )
        return Reference(match.group(1), match.group(2), match.group(3))
    if not text.strip():
        raise InputError("expected a reference such as dataset:NAME@latest or a path; got an empty string")
    path = Path(text)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return Reference("path", str(Path(path).resolve()) if base_dir is not None else text)


class StageSpec(BaseModel):
    """One `stages:` entry as written."""

    model_config = ConfigDict(extra="forbid")

    op: str | None = Field(None, description="A Keel operation: curate, train, eval.gate, …")
    run: str | None = Field(None, description="A shell command, run in the pipeline file's folder.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="The operation's arguments.")
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list, description="Stages to run first though no reference says so.")
    gate: bool = Field(False, description="A shell stage whose failure is a gate's (exit 1, evidence shown).")


class TriggerSpec(BaseModel):
    """When `keel monitor watch --pipeline FILE` starts a run: on a schedule, when alert rules fire, or both."""

    model_config = ConfigDict(extra="forbid")

    schedule: str | None = Field(None, description="Run when the last run started longer ago than this (`24h`).")
    alerts: list[str] = Field(default_factory=list, description="Run when one of these alert rules starts firing.")
    stages: list[str] = Field(default_factory=list, description="The stages to run (with what they need); default all.")


class PipelineSpec(BaseModel):
    """The whole file as written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    params: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageSpec]
    triggers: TriggerSpec = Field(default_factory=TriggerSpec)


@dataclass(frozen=True)
class Stage:
    """A validated stage with params substituted and references parsed."""

    name: str
    op: str  # an operation name, or `shell`
    args: dict[str, Any]
    inputs: tuple[Reference, ...]
    outputs: tuple[Reference, ...]
    needs: tuple[str, ...]
    gate: bool
    params: dict[str, Any] = field(default_factory=dict)  # the params the stage uses, by name
    after: tuple[str, ...] = ()  # every stage this one waits for: from references and `needs`


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline: its stages in an order that respects the DAG."""

    name: str
    path: Path
    params: dict[str, Any]
    stages: dict[str, Stage]  # topological order
    triggers: TriggerSpec = field(default_factory=TriggerSpec)

    def downstream(self, names: set[str]) -> set[str]:
        """`names` and every stage that (transitively) waits for one of them."""
        out = set(names)
        for stage in self.stages.values():  # topological order: a stage's predecessors come first
            if any(a in out for a in stage.after):
                out.add(stage.name)
        return out

    def upstream(self, names: set[str]) -> set[str]:
        """`names` and every stage they (transitively) wait for."""
        out = set(names)
        for stage in reversed(self.stages.values()):
            if stage.name in out:
                out.update(stage.after)
        return out


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs as a dict; each VALUE is read as YAML (`3` an int, `true` a bool).

    Examples:
        >>> parse_sets(["steps=40", "lr=1e-3", "name=chat"])
        {'steps': 40, 'lr': 0.001, 'name': 'chat'}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected --set KEY=VALUE (e.g. --set steps=40); got {shown(item)}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _substitute(value: Any, params: dict[str, Any], where: str, problems: list[str], used: set[str]) -> Any:
    """Replace `${params.x}` in every string of `value`; a string that is only `${params.x}` keeps x's type."""
    if isinstance(value, str):
        used.update(m.group(1) for m in _PARAM.finditer(value) if m.group(1) in params)
        whole = _PARAM.fullmatch(value)
        if whole:
            if whole.group(1) not in params:
                problems.append(f"{where}: unknown parameter {whole.group(1)!r} (params: {sorted(params) or 'none'})")
                return value
            return params[whole.group(1)]

        def one(match: re.Match[str]) -> str:
            if match.group(1) not in params:
                problems.append(f"{where}: unknown parameter {match.group(1)!r} (params: {sorted(params) or 'none'})")
                return match.group(0)
            return str(params[match.group(1)])

        return _PARAM.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v, params, f"{where}.{k}", problems, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, f"{where}[{i}]", problems, used) for i, v in enumerate(value)]
    return value


def _located(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]).replace(".with_.", ".with.")
    return f"{where}: {err['msg']}"


def parse_pipeline(
    data: Any, path: Path, *, params_file: dict[str, Any] | None = None, sets: dict[str, Any] | None = None
) -> Pipeline:
    """Validate pipeline data, raising one `ConfigError` that lists every problem with its path.

    Params come from the file's `params:`, then `params_file` (a `params.yaml`), then `sets` (`--set`).
    """
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping with name, params and stages; found {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        found = [_located(err) for err in exc.errors()]
        raise ConfigError(f"{where} has {len(found)} problem(s):\n  " + "\n  ".join(found)) from None
    params = {**spec.params, **(params_file or {}), **(sets or {})}
    problems: list[str] = []
    base = path.parent.resolve()
    stages: dict[str, Stage] = {}
    for name, raw in spec.stages.items():
        stage = _parse_stage(name, raw, params, base, problems)
        if stage is not None:
            stages[name] = stage
    ordered = _order(stages, problems)
    problems += [f"triggers.stages[{i}]: no stage named {s!r}" for i, s in enumerate(spec.triggers.stages)
                 if s not in spec.stages]  # fmt: skip
    if spec.triggers.schedule is not None:
        from keel.monitor import parse_duration

        try:
            parse_duration(spec.triggers.schedule)
        except InputError as exc:
            problems.append(f"triggers.schedule: {exc}")
    if problems:
        raise ConfigError(f"{where} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return Pipeline(spec.name, path.resolve(), params, ordered, spec.triggers)


def _parse_stage(name: str, raw: StageSpec, params: dict[str, Any], base: Path, problems: list[str]) -> Stage | None:
    at = f"stages.{name}"
    before = len(problems)
    if not _STAGE_NAME.fullmatch(name):
        problems.append(f"{at}: expected a stage name of letters, digits, '_' or '-'; got {name!r}")
    if (raw.op is None) == (raw.run is None):
        problems.append(f"{at}: expected exactly one of `op:` (a Keel operation) or `run:` (a shell command)")
        return None
    used: set[str] = set()
    args = _substitute(raw.with_, params, f"{at}.with", problems, used)
    if raw.run is not None:
        op, args = "shell", {"command": _substitute(raw.run, params, f"{at}.run", problems, used)}
    else:
        op = str(raw.op)
        if op not in OPERATIONS:
            problems.append(f"{at}.op: unknown operation {op!r}; expected one of {', '.join(sorted(OPERATIONS))}")
            return None
        try:
            args = OPERATIONS[op].args.model_validate(args).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            problems.extend(f"{at}.with.{_located(err)}" for err in exc.errors())
    refs: dict[str, list[Reference]] = {"inputs": [], "outputs": []}
    for side in ("inputs", "outputs"):
        for i, text in enumerate(getattr(raw, side)):
            value = _substitute(text, params, f"{at}.{side}[{i}]", problems, used)
            try:
                refs[side].append(parse_reference(str(value), base))
            except InputError as exc:
                problems.append(f"{at}.{side}[{i}]: {exc}")
    if len(problems) > before and not isinstance(args, dict):
        return None
    # Files an operation reads (its recipe, config, suite) are inputs too: editing one re-runs the stage.
    implicit = [parse_reference(str(args[k]), base) for k in file_args(op) if isinstance(args.get(k), str) and args[k]]
    inputs = tuple(dict.fromkeys([*refs["inputs"], *implicit]))
    used_params = {p: params[p] for p in sorted(used)}
    return Stage(name, op, args, inputs, tuple(refs["outputs"]), tuple(raw.needs), raw.gate, used_params)


def _order(stages: dict[str, Stage], problems: list[str]) -> dict[str, Stage]:
    """Each stage's predecessors from references and `needs`, and the stages in topological order."""
    producers: dict[str, str] = {}
    for stage in stages.values():
        for i, out in enumerate(stage.outputs):
            if out.key in producers:
                problems.append(
                    f"stages.{stage.name}.outputs[{i}]: {out.key} is also an output of stage {producers[out.key]!r}; "
                    "each object is made by one stage"
                )
            producers.setdefault(out.key, stage.name)
    graph: dict[str, tuple[str, ...]] = {}
    for stage in stages.values():
        after: list[str] = []
        for i, ref in enumerate(stage.inputs):
            producer = producers.get(ref.key)
            if producer is not None and producer != stage.name:
                after.append(producer)
            elif ref.kind == "path" and producer is None and not Path(ref.name).exists():
                problems.append(
                    f"stages.{stage.name}.inputs[{i}]: {ref.name} does not exist and no stage outputs it; "
                    "create it, fix the path, or add the stage that makes it"
                )
        for i, need in enumerate(stage.needs):
            if need not in stages:
                problems.append(f"stages.{stage.name}.needs[{i}]: no stage named {need!r}")
            else:
                after.append(need)
        graph[stage.name] = tuple(dict.fromkeys(after))
    try:
        TopologicalSorter(graph).prepare()  # raises on a cycle, naming it
    except CycleError as exc:
        cycle = list(exc.args[1])
        problems.append(
            f"stages.{cycle[0]}: the stages form a cycle: {' → '.join(reversed(cycle))}; "
            "a stage cannot (transitively) read its own output"
        )
        return stages
    return {n: _with_after(stages[n], graph[n]) for n in _file_order(graph) if n in stages}


def _file_order(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """A topological order that keeps the file's order wherever the DAG allows (the order people wrote)."""
    placed: set[str] = set()
    order: list[str] = []
    pending = list(graph)
    while pending:
        ready = next(n for n in pending if all(a in placed or a not in graph for a in graph[n]))
        pending.remove(ready)
        placed.add(ready)
        order.append(ready)
    return order


def _with_after(stage: Stage, after: tuple[str, ...]) -> Stage:
    from dataclasses import replace

    return replace(stage, after=after)


def load_pipeline(
    path: str | Path, *, params_path: str | Path | None = None, sets: dict[str, Any] | None = None
) -> Pipeline:
    """Read and validate a `pipeline.yaml`; its `params.yaml` neighbour (or `params_path`) overrides `params:`.

    Raises:
        ConfigError: The file is missing or not YAML, or any stage, param or reference is wrong (all listed).
    """
    file = Path(path)
    if file.is_dir():
        file = file / "pipeline.yaml"
    data = read_config_file(file, "pipeline", holds="a mapping with name, params and stages")
    params_file = Path(params_path) if params_path is not None else file.parent / "params.yaml"
    params = None
    if params_path is not None or params_file.exists():
        params = read_config_file(params_file, "params file", holds="a mapping of parameter names to values")
    return parse_pipeline(data, file, params_file=params, sets=sets)
