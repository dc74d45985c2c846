"""`keel index …`: build, query, list, show and evaluate retrieval indexes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time

if TYPE_CHECKING:
    from keel.index import IndexVersion, VectorParams

__all__ = ["index_app"]

index_app = typer.Typer(
    help="Retrieval indexes: chunks, embeddings, vector and keyword search over dataset versions.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RefArg = Annotated[str, typer.Argument(metavar="REF", help="NAME, NAME@vN or NAME@latest.")]
EfSearchOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=65_536,
        help="HNSW search breadth (default: chosen by the index's size); exact indexes ignore it.",
    ),
]
ModeOption = Annotated[
    Literal["hybrid", "vector", "keyword"], typer.Option(help="Fuse vector and BM25 results, or use one.")
]
HnswOption = Annotated[
    int | None,
    typer.Option(show_default=False, help="HNSW graph: links per vector (default 16, 2-512); implies --kind hnsw."),
]
_STAGES = {"chunk": "Chunking records", "embed": "Embedding chunks", "index": "Building indexes"}


@index_app.command("build")
def build(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The index's name.")],
    dataset: Annotated[str, typer.Option(help="The dataset version to index: NAME, NAME@vN or NAME@tag.")],
    chunk_size: Annotated[int, typer.Option(min=1, help="Most characters (or tokens) per chunk.")] = 800,
    overlap: Annotated[
        int, typer.Option(min=0, help="Characters (or tokens) shared by chunks cut mid-paragraph.")
    ] = 100,
    by: Annotated[
        Literal["chars", "tokens"], typer.Option(help="Measure chunks in characters or model tokens.")
    ] = "chars",
    model: Annotated[
        str | None, typer.Option(help="A sentence-transformers id or path (default: offline MiniLM).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Embed every chunk; reuse nothing from the last version.")
    ] = False,
    kind: Annotated[
        Literal["flat", "hnsw"] | None,
        typer.Option(
            show_default=False,
            help="Exact (flat) or HNSW vector search (default: flat below 20,000 chunks, hnsw from there).",
        ),
    ] = None,
    storage: Annotated[
        Literal["fp32", "sq8"] | None,
        typer.Option(
            show_default=False,
            help="How HNSW stores vectors: fp32, or sq8 (8 bits a dimension, re-ranked on fp32); implies --kind hnsw.",
        ),
    ] = None,
    hnsw_m: HnswOption = None,
    ef_construction: Annotated[
        int | None,
        typer.Option(show_default=False, help="HNSW graph: build breadth (default 64, 1-65,536); implies --kind hnsw."),
    ] = None,
    ef_search: EfSearchOption = None,
    json_output: JsonOption = False,
) -> None:
    """Build the next version of index NAME from a dataset version, embedding only new or changed records."""
    from keel.index import DEFAULT_MODEL, ChunkSettings, build_index

    store = get_store(ctx)
    settings = ChunkSettings(size=chunk_size, overlap=overlap, by=by)
    vectors = _vector_params(kind, storage, hnsw_m, ef_construction)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=True, disable=json_output) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = build_index(
            store,
            name,
            dataset,
            chunking=settings,
            model=model or DEFAULT_MODEL,
            incremental=not full,
            progress=advance,
            ef_search=ef_search,
            vectors=vectors,
        )
    index = result.index
    built = _built_vectors(index.manifest(store))
    if json_output:
        print_json({**result.to_json(), "vectors": built.shown()})
        return
    if not result.created:
        console().print(f"{index.ref} already indexes {index.dataset_ref} this way; nothing new built.")
        return
    reused = f", reused {result.reused_chunks:,} from {result.reused_from}" if result.reused_from else ""
    console().print(
        f"Built {index.ref} from {index.dataset_ref}: {index.num_records:,} records, {index.num_chunks:,} chunks, "
        f"vectors {built.describe()}; embedded {result.embedded_chunks:,}{reused} in {result.seconds:.1f}s"
    )


def _vector_params(
    kind: Literal["flat", "hnsw"] | None,
    storage: Literal["fp32", "sq8"] | None,
    hnsw_m: int | None,
    ef_construction: int | None,
) -> VectorParams | None:
    """The vector index `keel index build` asked for, or None for the library's choice by size.

    Any HNSW option asks for HNSW; with `--kind flat` only `--storage fp32` (what an exact index stores) fits.
    """
    from keel.core.errors import InputError
    from keel.index import VectorParams

    graph = {"--hnsw-m": hnsw_m, "--ef-construction": ef_construction}
    given = {flag: value for flag, value in graph.items() if value is not None}
    if kind == "flat" and (given or storage == "sq8"):
        wrong = {**given, **({"--storage": storage} if storage == "sq8" else {})}  # fp32 is what exact search stores
        found = ", ".join(f"{flag} {value}" for flag, value in wrong.items())
        raise InputError(
            f"expected HNSW options only with an HNSW index; got --kind flat with {found}. "
            "Drop them for exact search, or pass --kind hnsw"
        )
    if kind is None and not given and storage is None:
        return None
    if kind == "flat":
        return VectorParams("flat")
    return VectorParams("hnsw", m=16 if hnsw_m is None else hnsw_m,
                        ef_construction=64 if ef_construction is None else ef_construction,
                        storage=storage or "fp32")  # fmt: skip


def _built_vectors(manifest: dict[str, Any]) -> VectorParams:
    from keel.index import VectorParams

    return VectorParams.from_json(manifest["vectors"])


@index_app.command("query")
def query(
    ctx: typer.Context,
    ref: RefArg,
    text: Annotated[str, typer.Argument(help="The query.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many hits.")] = 5,
    filter_: Annotated[
        list[str], typer.Option("--filter", help="KEY=VALUE on a record column or meta field; repeat to combine.")
    ] = [],  # noqa: B006
    mode: ModeOption = "hybrid",
    ef_search: EfSearchOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search an index version: the best chunks, their scores and the records they come from."""
    from keel.index import parse_filters, search

    hits = search(get_store(ctx), ref, text, k, filters=parse_filters(filter_), mode=mode, ef_search=ef_search)
    if json_output:
        print_json([hit.to_json() for hit in hits])
        return
    out = console()
    if not hits:
        out.print("No hits.")
    for hit in hits:
        uri = (hit.source or {}).get("uri") or "—"
        out.print(f"[bold]{hit.rank}.[/bold] {hit.score:.4f}  {escape(hit.record_id)}  [dim]{escape(str(uri))}[/dim]")
        preview = " ".join(hit.text.split())  # one line per hit; --json has the chunk as it is
        out.print(f"   {escape(preview if len(preview) <= 240 else preview[:239] + '…')}")


def _rows(found: list[IndexVersion]) -> Table:
    table = Table("index", "latest", "dataset", "model", "kind", "records", "chunks", "built (UTC)")
    for v in found:
        table.add_row(v.name, f"v{v.version}", v.dataset_ref or "(table)", escape(v.embedding_model), v.kind,
                      f"{v.num_records:,}", f"{v.num_chunks:,}", format_time(v.created_at)[:19])  # fmt: skip
    return table


@index_app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List indexes with their latest version."""
    from keel.index import list_indexes

    found = list_indexes(get_store(ctx))
    if json_output:
        print_json([v.to_json() for v in found])
        return
    console().print(_rows(found) if found else "No indexes yet: `keel index build NAME --dataset REF`.")


@index_app.command("show")
def show(ctx: typer.Context, ref: RefArg, json_output: JsonOption = False) -> None:
    """Show an index version: dataset, model, chunking, engines and files."""
    from keel.index import get_index

    store = get_store(ctx)
    index = get_index(store, ref)
    manifest = index.manifest(store)
    if json_output:
        print_json({**index.to_json(), "vectors": _built_vectors(manifest).shown(), "manifest_content": manifest})
        return
    out = console()
    out.print(f"[bold]{index.ref}[/bold]  {index.kind}  {index.num_chunks:,} chunks of {index.num_records:,} records")
    out.print(f"  dataset {index.dataset_ref or '(table)'}; model {escape(index.embedding_model)}")
    chunking = index.chunking
    vectors = _built_vectors(manifest).describe()
    out.print(f"  chunks of {chunking.size} {chunking.by}, overlap {chunking.overlap}; vectors {vectors}")
    out.print(f"  embedded {index.embedded_chunks:,} anew (reused from {manifest.get('reused_from') or '—'})")
    out.print(f"  built by {index.created_by} at {format_time(index.created_at)}; manifest {index.manifest_digest}")
    for key, entry in manifest["files"].items():
        out.print(f"  {key}: {entry['size']:,} bytes  [dim]{entry['digest'][:12]}[/dim]")


@index_app.command("eval")
def eval_command(
    ctx: typer.Context,
    ref: RefArg,
    queries: Annotated[Path, typer.Option(help='JSON Lines: {"query": "...", "relevant": ["record-id", ...]}.')],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Cut-off for recall and nDCG.")] = 10,
    mode: ModeOption = "hybrid",
    json_output: JsonOption = False,
) -> None:
    """Measure recall@k, MRR and nDCG@k on labelled queries; stored as an eval run."""
    from keel.index import evaluate_index

    with console().status("Evaluating…"):
        result = evaluate_index(get_store(ctx), ref, queries, k=k, mode=mode)
    if json_output:
        print_json(result.to_json())
        return
    metrics = ", ".join(f"{key}={value:.4f}" for key, value in result.metrics.items())
    console().print(f"{result.index} on {len(result.per_query)} queries: {metrics}  (run {result.run_id})")
