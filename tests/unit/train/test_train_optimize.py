from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.registry import ModelVersion, get_model, list_models
from keel.store import Store, walk
from keel.train import DistillOptions, QualityLossError, distill_model, load_model, prune_model, quantize_model
from keel.train._measure import heldout_texts, measure

Commit = Callable[[Store, str, list[dict[str, object]]], str]


def test_quantize_keeps_quality_shrinks_weights_and_reloads(store: Store, tiny: ModelVersion) -> None:
    import torch

    result = quantize_model(store, "tiny")
    assert result.model.ref == "tiny-int8@v1" and result.parent == "tiny@v1"
    assert result.metrics["size_bytes"] < result.parent_metrics["size_bytes"]
    assert abs(result.details["perplexity_change"]) < 0.02 and result.details["layers"] > 0
    info = get_model(store, "tiny-int8").info["optimization"]
    assert info["parent"] == "tiny@v1" and info["metrics"]["perplexity"] == result.metrics["perplexity"]
    model, tokenizer = load_model(store, "tiny-int8")
    original, _ = load_model(store, "tiny")
    texts = heldout_texts(None, None)
    assert measure(model, tokenizer, texts).perplexity == pytest.approx(result.metrics["perplexity"], rel=1e-3)
    # Served by int8 kernels: the layer holds int8 weights (not float32 dequantised at load) ...
    q_proj = model.model.layers[0].self_attn.q_proj
    with warnings.catch_warnings():  # torch 2.13 deprecates creating quantised tensors, which weight() does
        warnings.simplefilter("ignore", UserWarning)
        int8_weight = q_proj.weight()
    assert type(q_proj).__name__ == "Int8Linear" and int8_weight.int_repr().dtype == torch.int8
    # ... within half a step of the parent's float weights, per output channel.
    float_weight = original.model.layers[0].self_attn.q_proj.weight
    step = float_weight.abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((int8_weight.dequantize() - float_weight).abs() <= step / 2 + 1e-6)
    assert torch.equal(model.get_input_embeddings().weight, original.get_input_embeddings().weight)
    with store.db.read() as conn:
        assert "model-version:tiny@v1" in {
            h.node for h in walk(conn, "model-version:tiny-int8@v1", "upstream", depth=1)
        }


def test_quantize_refuses_a_worse_model(store: Store, tiny: ModelVersion) -> None:
    with pytest.raises(QualityLossError, match="was not registered"):
        quantize_model(store, "tiny", max_ppl_increase=-0.5)
    assert [m["name"] for m in list_models(store)] == ["tiny"]


def test_prune_reports_sparsity(store: Store, tiny: ModelVersion) -> None:
    result = prune_model(store, "tiny", sparsity=0.5)
    assert result.details["layer_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert 0 < result.details["model_sparsity"] < 0.5
    model, _ = load_model(store, result.model.ref)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    # The card says plainly that unstructured pruning saves neither size nor time.
    card = get_model(store, result.model.ref).info["optimization"]
    assert "does not make the model smaller or faster" in card["note"]
    assert result.details["size_ratio"] >= 0.99


def test_structured_pruning_removes_mlp_channels_and_shrinks_the_model(store: Store, tiny: ModelVersion) -> None:
    result = prune_model(store, "tiny", sparsity=0.5, structure="mlp-channels")
    details = result.details
    width = details["mlp_channels_before"]
    assert details["mlp_channels_after"] == width // 2 and details["structure"] == "mlp-channels"
    assert details["parameters_after"] < details["parameters_before"]
    # Real size: the saved files shrink with the parameters (unlike unstructured pruning).
    assert result.metrics["size_bytes"] < 0.95 * result.parent_metrics["size_bytes"]
    assert details["size_ratio"] < 0.95 and "speedup" in details
    model, tokenizer = load_model(store, result.model.ref)
    mlp = model.model.layers[0].mlp
    assert mlp.up_proj.out_features == mlp.gate_proj.out_features == mlp.down_proj.in_features == width // 2
    assert model.config.intermediate_size == width // 2
    # It reloads and scores text like the model that was measured.
    texts = heldout_texts(None, None)
    assert measure(model, tokenizer, texts).perplexity == pytest.approx(result.metrics["perplexity"], rel=1e-3)
    assert "smaller" in get_model(store, result.model.ref).info["optimization"]["note"]


def test_channel_importance_ignores_rescalings_that_do_not_change_the_function(
    store: Store, tiny: ModelVersion
) -> None:
    # Scaling a channel's up_proj row by 1000 and its down_proj column by 1/1000 leaves the model's
    # output unchanged; importance by weight norms alone would then keep that channel for its big
    # row, importance by activation x down norm (what is used) is unchanged, so the same channels go.
    import copy

    import torch

    from keel.train._optimize import _mlp_channels

    model, tokenizer = load_model(store, "tiny")
    rescaled = copy.deepcopy(model)
    with torch.no_grad():
        for layer in rescaled.model.layers:
            layer.mlp.up_proj.weight[:4] *= 1000
            layer.mlp.down_proj.weight[:, :4] /= 1000
    texts = heldout_texts(None, None)
    assert measure(rescaled, tokenizer, texts).perplexity == pytest.approx(measure(model, tokenizer, texts).perplexity)
    _mlp_channels(model, tokenizer, 0.5)
    _mlp_channels(rescaled, tokenizer, 0.5)
    pruned = measure(model, tokenizer, texts).perplexity
    assert measure(rescaled, tokenizer, texts).perplexity == pytest.approx(pruned, rel=1e-3)


def test_speed_is_compared_warm_and_alternating(
    store: Store, tiny: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One cold measurement per model gave the int8 version a 1.95x "speed-up" that was not there.
    from keel.train import _optimize

    calls: list[int] = []
    real = _optimize.measure

    def counting(model: object, tokenizer: object, texts: list[str]) -> object:
        calls.append(id(model))
        return real(model, tokenizer, texts)

    monkeypatch.setattr(_optimize, "measure", counting)
    result = quantize_model(store, "tiny")
    rounds = 2 * _optimize.SPEED_ROUNDS
    warmup, timed = calls[-rounds - 2 : -rounds], calls[-rounds:]
    first, second = warmup
    assert first != second and timed == [first, second, second, first] * (_optimize.SPEED_ROUNDS // 2)
    assert result.details["speedup"] == pytest.approx(
        result.metrics["tokens_per_second"] / result.parent_metrics["tokens_per_second"], rel=1e-2
    )


def test_distill_trains_a_smaller_student(
    store: Store, tiny: ModelVersion, commit: Commit, tiny_texts: list[str]
) -> None:
    ref = commit(store, "corpus", [{"text": t} for t in tiny_texts[:40]])
    options = DistillOptions(layers=1, steps=3, batch_size=2, max_length=32)
    result = distill_model(store, "tiny", ref, options=options)
    student, _ = load_model(store, result.model.ref)
    assert student.config.num_hidden_layers == 1 and result.metrics["size_bytes"] < result.parent_metrics["size_bytes"]
    with store.db.read() as conn:
        upstream = {h.node for h in walk(conn, result.model.node, "upstream", depth=1)}
    assert {"model-version:tiny@v1", "dataset-version:corpus@v1"} <= upstream


def test_cli_quantize_and_prune(store: Store, tiny: ModelVersion) -> None:
    workspace = str(store.settings.workspace)
    result = CliRunner().invoke(app, ["-w", workspace, "model", "quantize", "tiny", "--name", "small"])
    assert result.exit_code == 0, result.output
    assert "Registered small@v1 (int8 of tiny@v1)" in result.output
    result = CliRunner().invoke(app, ["-w", workspace, "model", "prune", "tiny", "--sparsity", "1.5"])
    assert result.exit_code == 2 and "expected --sparsity between 0 and 1" in result.output
    args = ["-w", workspace, "model", "prune", "tiny", "--structure", "mlp-channels", "--sparsity", "0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "MLP channels:" in result.output and "smaller" in result.output
