"""`keel model …`: register, list, show, alias, roll back, pull and describe model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from keel.cli._alias import add_alias_commands
from keel.cli._context import console, get_store, print_json
from keel.cli._render import human_bytes
from keel.core.clock import format_time
from keel.registry import (
    ModelInfo,
    get_model,
    list_models,
    model_card,
    pull_model,
    register_model,
    render_card_markdown,
)

__all__ = ["model_app"]

model_app = typer.Typer(help="The model registry: versions, aliases and their history, cards.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Reason = Annotated[str, typer.Option(help="Why; kept in the alias history.")]


@model_app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    path: Annotated[Path | None, typer.Argument(help="A model directory or file (omit with --run).")] = None,
    run: Annotated[str | None, typer.Option(help="The run that produced it; its artifacts if PATH is omitted.")] = None,
    base_model: Annotated[str | None, typer.Option(help="What it was tuned from: a ref, hub id or path.")] = None,
    description: Annotated[str | None, typer.Option(help="One paragraph for the card.")] = None,
    intended_use: Annotated[str | None, typer.Option(help="What it is for, for the card.")] = None,
    limitations: Annotated[str | None, typer.Option(help="Known limitations, for the card.")] = None,
    allow_unsafe: Annotated[
        bool, typer.Option("--allow-unsafe", help="Register files the scan finds dangerous (audited).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Scan a model's files, store them as blobs and register them as the next version of NAME."""
    store = get_store(ctx)
    info = ModelInfo(description=description, intended_use=intended_use, limitations=limitations)
    with console().status(f"Storing files of {name}…"):
        model, created = register_model(
            store, name, path, run_id=run, base_model=base_model, info=info, allow_unsafe=allow_unsafe
        )
    if json_output:
        print_json({**model.to_json(), "created": created})
    elif created:
        console().print(
            f"Registered {model.ref}: {model.format}, {model.file_count} file(s), {human_bytes(model.size)}"
        )
    else:
        console().print(f"{model.ref} already holds these files; nothing new registered.")


@model_app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List models with their latest version and aliases."""
    found = list_models(get_store(ctx))
    if json_output:
        print_json(found)
        return
    table = Table("model", "latest", "format", "aliases", "updated (UTC)")
    for row in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in row["aliases"].items())
        table.add_row(row["name"], f"v{row['latest']}", row["format"], aliases, row["updated_at"][:19])
    console().print(table if found else "No models yet: `keel model register NAME PATH`.")


@model_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    json_output: JsonOption = False,
) -> None:
    """Show a model version: files, run, base model and aliases."""
    model = get_model(get_store(ctx), ref)
    if json_output:
        print_json(model.to_json())
        return
    out = console()
    aliases = ", ".join(model.aliases) or "—"
    out.print(f"[bold]{model.ref}[/bold]  {model.format}  {human_bytes(model.size)}  aliases: {aliases}")
    out.print(f"  registered by {model.created_by} at {format_time(model.created_at)}")
    out.print(f"  run {model.run_id or '—'}; base model {model.base_model or '—'}")
    for mark in model.erased_data:
        out.print(f"  [bold red]trained on erased data[/bold red] (erasure {mark['erasure']})")
    for f in model.files:
        out.print(f"  {f.path}  {human_bytes(f.size)}  [dim]{f.digest[:12]}[/dim]")


add_alias_commands(model_app, "model")


@model_app.command("pull")
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    directory: Annotated[Path, typer.Argument(help="Where to restore the files.")],
    force: Annotated[bool, typer.Option(help="Overwrite files in a non-empty directory.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore a model version's files into DIRECTORY, each verified against its digest."""
    with console().status(f"Restoring {ref}…"):
        model = pull_model(get_store(ctx), ref, directory, force=force)
    if json_output:
        print_json({"ref": model.ref, "directory": str(directory), "files": model.file_count})
    else:
        console().print(f"Restored {model.ref} into {directory}: {model.file_count} file(s) verified.")


@model_app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN or NAME@alias.")],
    output_format: Annotated[
        Literal["md", "json"], typer.Option("--format", help="md or json (the same as --json).")
    ] = "md",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Print the model card, built from the registry and lineage."""
    data = model_card(get_store(ctx), ref)
    if json_output or output_format == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = render_card_markdown(data)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console().print(f"Wrote the card of {data['model']} to {output}")


# Commands that build model versions with keel.train (imported lazily: torch loads only when they run).


def _print_optimized(result: Any, json_output: bool) -> None:
    if json_output:
        print_json(result.to_json())
        return
    before, after = result.parent_metrics, result.metrics
    console().print(
        f"Registered {result.model.ref} ({result.method} of {result.parent}): perplexity "
        f"{before['perplexity']:.3f} → {after['perplexity']:.3f}, size {human_bytes(int(before['size_bytes']))} → "
        f"{human_bytes(int(after['size_bytes']))}, {after['tokens_per_second']:.0f} vs "
        f"{before['tokens_per_second']:.0f} tokens/s scored"
    )


@model_app.command("import-gguf")
def import_gguf_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model name to register under.")],
    path: Annotated[Path | None, typer.Argument(help="A .gguf file (default: SmolLM2-135M-Instruct).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Load a GGUF file through transformers (dequantised to float32) and register it."""
    from keel.train import import_gguf

    with console().status("Loading and dequantising the GGUF file…"):
        model = import_gguf(get_store(ctx), name, path)
    if json_output:
        print_json(model.to_json())
    else:
        console().print(f"Registered {model.ref}: {model.format}, {human_bytes(model.size)}")


@model_app.command("export-gguf")
def export_gguf_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The model version to export (full weights, or a PEFT adapter).")],
    quant: Annotated[
        Literal["q4_k_m", "q8_0", "f16"], typer.Option(help="GGUF weight type: llama.cpp's quantiser, or f16.")
    ] = "q8_0",
    name: Annotated[str | None, typer.Option(help="Register as this name (default NAME-gguf).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset version to measure perplexity on (default: Python docs).")
    ] = None,
    max_ppl_increase: Annotated[
        float | None, typer.Option(help="Refuse the file if perplexity rises more than this share (e.g. 0.1).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="llama.cpp threads for quantising and scoring.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Convert a model version (adapters merged) to one GGUF file with llama.cpp's tools and register it."""
    from keel.train import export_gguf

    with console().status(f"Exporting {ref} to GGUF ({quant})…") as status:
        result = export_gguf(
            get_store(ctx), ref, quant, name, dataset=dataset, max_ppl_increase=max_ppl_increase, threads=threads,
            progress=lambda stage: status.update(f"Exporting {ref} to GGUF ({quant}): {stage}…"),
        )  # fmt: skip
    _print_optimized(result, json_output)


@model_app.command("new-tiny")
def new_tiny(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model name to register under.")],
    dataset: Annotated[str, typer.Option(help="A dataset version whose text trains the tokenizer and model.")],
    vocab_size: Annotated[int, typer.Option(min=300, help="BPE vocabulary size (at most).")] = 4096,
    hidden_size: Annotated[int, typer.Option(min=16, help="Model width.")] = 256,
    layers: Annotated[int, typer.Option(min=1, help="Decoder layers.")] = 4,
    steps: Annotated[int, typer.Option(min=0, help="Pre-training steps on the text.")] = 60,
    json_output: JsonOption = False,
) -> None:
    """Build a tiny Llama-architecture model and BPE tokenizer from a dataset version, for tests and demos."""
    from keel.train import TinyModelOptions, new_tiny_model

    options = TinyModelOptions(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=layers, steps=steps)
    with console().status(f"Training a tokenizer and a tiny model on {dataset}…"):
        model = new_tiny_model(get_store(ctx), name, dataset, options)
    if json_output:
        print_json(model.to_json())
    else:
        console().print(f"Registered {model.ref}: {model.info['parameters']:,} parameters")


MaxIncrease = Annotated[
    float | None, typer.Option(help="Refuse the result if perplexity rises more than this share (e.g. 0.1).")
]
Heldout = Annotated[str | None, typer.Option(help="Dataset version to measure perplexity on (default: Python docs).")]


@model_app.command("quantize")
def quantize(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The model version to quantise.")],
    name: Annotated[str | None, typer.Option(help="Register as this name (default NAME-int8).")] = None,
    dataset: Heldout = None,
    max_ppl_increase: MaxIncrease = 0.10,
    json_output: JsonOption = False,
) -> None:
    """Quantise linear layers to int8 weights (CPU), refusing a model that loses too much quality."""
    from keel.train import quantize_model

    with console().status(f"Quantising {ref} and measuring it…"):
        result = quantize_model(get_store(ctx), ref, name, dataset=dataset, max_ppl_increase=max_ppl_increase)
    _print_optimized(result, json_output)


@model_app.command("prune")
def prune(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The model version to prune.")],
    sparsity: Annotated[
        float, typer.Option(help="Share of each linear layer's weights (or of the MLP channels) to remove.")
    ] = 0.3,
    name: Annotated[str | None, typer.Option(help="Register as this name (default NAME-pruned).")] = None,
    dataset: Heldout = None,
    max_ppl_increase: MaxIncrease = None,
    structure: Annotated[
        Literal["unstructured", "mlp-channels"],
        typer.Option(help="unstructured: zero single weights (same size and speed); mlp-channels: remove channels."),
    ] = "unstructured",
    json_output: JsonOption = False,
) -> None:
    """Prune a model version and report what was removed, its size, speed and the quality kept."""
    from keel.train import prune_model

    with console().status(f"Pruning {ref} and measuring it…"):
        result = prune_model(
            get_store(ctx),
            ref,
            name,
            sparsity=sparsity,
            dataset=dataset,
            max_ppl_increase=max_ppl_increase,
            structure=structure,
        )
    _print_optimized(result, json_output)
    if not json_output:
        details = result.details
        if structure == "unstructured":
            console().print(
                f"Sparsity: {details['layer_sparsity']:.1%} of pruned layers, "
                f"{details['model_sparsity']:.1%} of the model"
            )
        else:
            console().print(
                f"MLP channels: {details['mlp_channels_before']} -> {details['mlp_channels_after']} per layer; "
                f"parameters x{details['parameter_ratio']:.3f}"
            )
        console().print(details["note"])


@model_app.command("distill")
def distill(
    ctx: typer.Context,
    teacher: Annotated[str, typer.Argument(help="The teacher model version.")],
    dataset: Annotated[str, typer.Option(help="Dataset version whose texts are the distillation data.")],
    name: Annotated[str | None, typer.Option(help="Register as this name (default NAME-distilled).")] = None,
    layers: Annotated[int, typer.Option(min=1, help="Decoder layers the student keeps.")] = 1,
    steps: Annotated[int, typer.Option(min=1, help="Training steps.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """Train a smaller student (a subset of the teacher's layers) on the teacher's logits."""
    from keel.train import DistillOptions, distill_model

    options = DistillOptions(layers=layers, steps=steps)
    with console().status(f"Distilling {teacher} into a {layers}-layer student…"):
        result = distill_model(get_store(ctx), teacher, dataset, name, options=options)
    _print_optimized(result, json_output)
