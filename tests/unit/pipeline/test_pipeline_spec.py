"""pipeline.yaml validation: every problem with its path at once, params, the DAG from references."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keel.core.errors import ConfigError
from keel.pipeline import load_pipeline, parse_pipeline
from keel.pipeline._spec import parse_reference, parse_sets


def _parse(tmp_path: Path, text: str, **kw: object) -> object:
    return parse_pipeline(yaml.safe_load(text), tmp_path / "pipeline.yaml", **kw)  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once_with_its_path(tmp_path: Path) -> None:
    text = """
name: broken
params: {steps: 3}
stages:
  make:
    run: "echo ${params.nope}"
    inputs: [missing.txt]
    needs: [ghost]
  train:
    op: train
    with: {cfg: x.yaml}
  gate:
    op: eval.gaet
  both:
    op: curate
    run: echo
  one:
    run: echo
    outputs: ["dataset:kb"]
  two:
    run: echo
    outputs: ["dataset:kb", "model:bad name"]
"""
    with pytest.raises(ConfigError) as caught:
        _parse(tmp_path, text)
    message = str(caught.value)
    for expected in (
        "stages.make.run: unknown parameter 'nope' (params: ['steps'])",
        "stages.make.inputs[0]: ",  # missing.txt: no file and no stage makes it
        "does not exist and no stage outputs it",
        "stages.make.needs[0]: no stage named 'ghost'",
        "stages.train.with.config: Field required",
        "stages.train.with.cfg: Extra inputs are not permitted",
        "stages.gate.op: unknown operation 'eval.gaet'",
        "stages.both: expected exactly one of `op:`",
        "stages.two.outputs[1]: expected model:NAME",
    ):
        assert expected in message, (expected, message)
    assert "9 problem(s)" in message or message.count("\n  ") >= 9


def test_a_duplicate_output_names_both_stages(tmp_path: Path) -> None:
    text = "name: p\nstages:\n  one: {run: a, outputs: ['dataset:kb']}\n  two: {run: b, outputs: ['dataset:kb@v2']}\n"
    with pytest.raises(ConfigError, match=r"stages.two.outputs\[0\]: dataset:kb is also an output of stage 'one'"):
        _parse(tmp_path, text)


def test_a_cycle_is_refused_with_its_path(tmp_path: Path) -> None:
    text = """
name: loop
stages:
  a: {run: x, inputs: ["dataset:c"], outputs: ["dataset:a"]}
  b: {run: x, inputs: ["dataset:a"], outputs: ["dataset:b"]}
  c: {run: x, inputs: ["dataset:b"], outputs: ["dataset:c"]}
  d: {run: x, inputs: ["dataset:a"]}
"""
    with pytest.raises(ConfigError) as caught:
        _parse(tmp_path, text)
    message = str(caught.value)
    assert "the stages form a cycle" in message and "1 problem(s)" in message
    cycle = message.split("cycle: ")[1].split(";")[0].split(" → ")
    assert set(cycle) == {"a", "b", "c"} and cycle[0] == cycle[-1]


def test_the_dag_comes_from_references_aliases_and_needs(tmp_path: Path) -> None:
    (tmp_path / "raw.txt").write_text("x")
    text = """
name: loop
stages:
  deploy: {op: deploy.create, with: {name: a, model: "model:m@production"}, inputs: ["model:m@production"]}
  alias: {op: model.alias, with: {model: "model:m@latest", alias: production}, inputs: ["model:m@latest"],
          outputs: ["model:m@production"], needs: [gate]}
  gate: {run: "true", gate: true, inputs: ["model:m"]}
  train: {run: "true", inputs: ["dataset:kb@latest"], outputs: ["model:m"]}
  curate: {run: "true", inputs: [raw.txt], outputs: ["dataset:kb"]}
  other: {run: "true", inputs: ["dataset:elsewhere@v3"]}
"""
    pipeline = _parse(tmp_path, text)
    order = list(pipeline.stages)  # type: ignore[attr-defined]
    assert order.index("curate") < order.index("train") < order.index("gate") < order.index("alias")
    assert order.index("alias") < order.index("deploy")
    assert pipeline.stages["alias"].after == ("train", "gate")  # type: ignore[attr-defined]
    assert pipeline.stages["other"].after == ()  # type: ignore[attr-defined]
    assert pipeline.downstream({"train"}) == {"train", "gate", "alias", "deploy"}  # type: ignore[attr-defined]
    assert pipeline.upstream({"gate"}) == {"gate", "train", "curate"}  # type: ignore[attr-defined]


def test_params_come_from_the_file_then_params_yaml_then_set(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "name: p\nparams: {steps: 1, lr: 0.1, tag: a}\n"
        "stages:\n  train:\n    op: train\n    with: {config: t.yaml, set: {training.max_steps: '${params.steps}'}}\n"
        "    outputs: ['model:m-${params.tag}']\n"
    )
    (tmp_path / "t.yaml").write_text("name: m\n")
    (tmp_path / "params.yaml").write_text("steps: 2\ntag: b\n")
    pipeline = load_pipeline(tmp_path / "pipeline.yaml", sets=parse_sets(["tag=c"]))
    stage = pipeline.stages["train"]
    assert stage.args["set"] == {"training.max_steps": 2}  # a whole-string param keeps its type
    assert [str(o) for o in stage.outputs] == ["model:m-c"]
    assert stage.params == {"steps": 2, "tag": "c"}  # only the params the stage uses
    assert [r.kind for r in stage.inputs] == ["path"]  # the config file it reads is an input
    assert pipeline.params == {"steps": 2, "lr": 0.1, "tag": "c"}


def test_references_and_sets_refuse_bad_input() -> None:
    assert parse_reference("index:kb@v2").key == "index:kb"
    assert parse_reference("model:chat@production").key == "model:chat@production"
    assert parse_reference("model:chat@latest").key == "model:chat"
    with pytest.raises(Exception, match="expected --set KEY=VALUE"):
        parse_sets(["steps"])


def test_the_shipped_demo_pipeline_validates_in_file_order(tmp_path: Path) -> None:
    from importlib.resources import files

    from keel.pipeline._demo import DEMO_FILES
    from keel.pipeline._sample_corpus import write_sample_corpus

    shipped = sorted(p.name for p in files("keel.pipeline").joinpath("demo").iterdir() if p.name.endswith(".yaml"))
    assert shipped == sorted(DEMO_FILES) and len(shipped) >= 4
    (tmp_path / "pipeline").mkdir()
    for name in shipped:
        (tmp_path / "pipeline" / name).write_bytes(files("keel.pipeline").joinpath("demo", name).read_bytes())
    write_sample_corpus(tmp_path / "corpus")
    pipeline = load_pipeline(tmp_path / "pipeline")
    assert list(pipeline.stages) == [
        "curate",
        "sft",
        "cases",
        "index",
        "base",
        "train",
        "gate",
        "production",
        "deploy",
        "prompt",
        "rag",
    ]
    assert pipeline.stages["train"].after == ("sft", "base")
    assert pipeline.stages["deploy"].after == ("production",)
    slow = load_pipeline(tmp_path / "pipeline", sets={"fast": False, "base": "smollm2-135m-instruct"})
    assert slow.stages["base"].args["args"] == {
        "name": "smollm2-135m-instruct",
        "fast": False,
        "dataset": "acme-kb@latest",
    }
    assert [str(r) for r in slow.stages["train"].inputs][:2] == [
        "dataset:acme-sft@latest",
        "model:smollm2-135m-instruct@latest",
    ]
