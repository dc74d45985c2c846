"""`keel data …`: commit, inspect, diff, split, export, validate and trace dataset versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.cli._render import human_bytes, lineage_tree
from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.data import (
    DatasetVersion,
    commit_version,
    diff_versions,
    export_version,
    get_version,
    list_datasets,
    list_versions,
    load_expectations,
    repeated_ids,
    split_version,
    tag_version,
    trace_record,
    validate_version,
)

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Dataset versions: immutable, content-addressed, diffable, traceable.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _indented_yaml(value: dict[str, Any]) -> str:
    """A manifest's nested producer (command, recipe, curation report) as indented YAML, not a Python repr."""
    import yaml

    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return "\n".join(f"  {line}" for line in text.rstrip().splitlines())


def _summary(version: DatasetVersion, created: bool = True) -> str:
    shared = version.num_bytes - version.new_bytes
    if not created:
        return f"{version.ref} already holds exactly these records; nothing new committed."
    return (
        f"Committed {version.ref} ({version.digest[:12]}): {version.num_rows:,} records in "
        f"{len(version.shards)} shard(s); "
        f"{human_bytes(version.new_bytes)} new, {human_bytes(max(shared, 0))} shared with earlier versions."
    )


@data_app.command("commit")
def commit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name.")],
    paths: Annotated[list[Path], typer.Argument(help="Parquet or JSONL files, or directories (a curation output).")],
    message: Annotated[str | None, typer.Option("-m", "--message", help="What changed.")] = None,
    parent: Annotated[
        list[str] | None, typer.Option(help="Parent version ref(s); default the latest version of NAME.")
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of JSONL files (e.g. latin-1, cp1252); converted to UTF-8.")
    ] = "utf-8",
    json_output: JsonOption = False,
) -> None:
    """Commit files as the next version of NAME, storing only records its parent does not hold.

    A JSONL file with a line Keel cannot store unchanged (bytes not in ENCODING, NaN, integers beyond
    int64, nesting over 128 levels) is refused whole, naming the line; `keel curate run` quarantines them.
    """
    store = get_store(ctx)
    with console().status(f"Committing {name}…"):
        version, created = commit_version(
            store, name, [str(p) for p in paths], message=message, parents=parent, encoding=encoding
        )
        repeats = repeated_ids(store, version)
    if json_output:
        print_json({**version.to_json(), "created": created, "duplicate_ids": repeats.count})
        return
    console().print(_summary(version, created))
    warning = repeats.warning(version.ref)
    if warning is not None:  # allowed, but never silently: records are told apart by id
        print(f"warning: {warning}", file=sys.stderr)


@data_app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List datasets with their latest version."""
    found = list_datasets(get_store(ctx))
    if json_output:
        print_json([v.to_json() for v in found])
        return
    table = Table("dataset", "latest", "records", "size", "tags", "created (UTC)")
    for v in found:
        table.add_row(
            v.name,
            f"v{v.version}",
            f"{v.num_rows:,}",
            human_bytes(v.num_bytes),
            ", ".join(v.tags),
            format_time(v.created_at)[:19],
        )
    console().print(table if found else "No datasets yet: `keel data commit NAME PATH`.")


@data_app.command("log")
def log(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name.")],
    json_output: JsonOption = False,
) -> None:
    """Every version of NAME, newest first."""
    versions = list_versions(get_store(ctx), name)
    if json_output:
        print_json([v.to_json() for v in versions])
        return
    table = Table("version", "digest", "records", "new bytes", "tags", "by", "created (UTC)", "message")
    for v in versions:
        table.add_row(
            f"v{v.version}",
            v.digest[:12],
            f"{v.num_rows:,}",
            human_bytes(v.new_bytes),
            ", ".join(v.tags),
            v.created_by,
            format_time(v.created_at)[:19],
            v.message or "",
        )
    console().print(table)


@data_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@vN, NAME@tag or sha256:PREFIX.")],
    json_output: JsonOption = False,
) -> None:
    """A version's manifest: schema, statistics, shards, parents and producer."""
    version = get_version(get_store(ctx), ref)
    if json_output:
        print_json(version.to_json())
        return
    out = console()
    out.print(f"[bold]{version.ref}[/]  sha256:{version.digest}")
    out.print(
        f"{version.num_rows:,} records, {len(version.shards)} shard(s), {human_bytes(version.num_bytes)}; "
        f"by {version.created_by} at {format_time(version.created_at)}"
    )
    if version.message:
        out.print(f"message: {version.message}")
    if version.tags:
        out.print(f"tags: {', '.join(version.tags)}")
    out.print("producer:")
    out.print(escape(_indented_yaml(version.producer)), highlight=False)
    table = Table("column", "type", "nulls", "summary")
    for field in version.schema:
        stats = dict(version.stats.get(field.name, {}))
        summary = ", ".join(f"{k}={v}" for k, v in stats.items() if k not in ("type", "nulls"))
        table.add_row(field.name, str(field.type), str(stats.get("nulls", "")), summary)
    out.print(table)


@data_app.command("diff")
def diff(
    ctx: typer.Context,
    before: Annotated[str, typer.Argument(help="The older version ref.")],
    after: Annotated[str, typer.Argument(help="The newer version ref.")],
    limit: Annotated[int, typer.Option(help="Ids to list per kind of change.")] = 10,
    json_output: JsonOption = False,
) -> None:
    """Records added, removed and changed (by id and content hash), schema and statistics changes."""
    result = diff_versions(get_store(ctx), before, after)
    if json_output:
        print_json(result.to_json(limit=None))
        return
    out = console()
    out.print(
        f"{result.before} → {result.after}: [green]+{len(result.added):,} added[/], "
        f"[red]-{len(result.removed):,} removed[/], [yellow]~{len(result.changed):,} changed[/], "
        f"{result.unchanged:,} unchanged"
    )
    for label, ids in (("added", result.added), ("removed", result.removed), ("changed", result.changed)):
        if ids:
            more = f" … and {len(ids) - limit:,} more" if len(ids) > limit else ""
            out.print(f"  {label}: {', '.join(ids[:limit])}{more}")
    for label, cols in (("columns added", result.schema_added), ("columns removed", result.schema_removed)):
        if cols:
            out.print(f"  {label}: {', '.join(cols)}")
    for col, (old, new) in result.schema_changed.items():
        out.print(f"  column {col}: {old} → {new}")
    for col, changes in result.stats.items():
        out.print(f"  stats {col}: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in changes.items()))


@data_app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to export.")],
    dest: Annotated[Path, typer.Argument(help="The file (jsonl, parquet) or folder (hf) to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, parquet or hf (a Hugging Face dataset folder).")
    ] = "jsonl",
    force: Annotated[
        bool, typer.Option("--force", help="Replace DEST if it exists (without it, an existing DEST is refused).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a version out as JSON lines, Parquet or a Hugging Face dataset."""
    if fmt not in ("jsonl", "parquet", "hf"):
        raise InputError(f"expected --format jsonl, parquet or hf; got {shown(fmt)}")
    store = get_store(ctx)
    with console().status(f"Exporting {ref}…"):
        path = export_version(store, ref, dest, fmt, force=force)  # type: ignore[arg-type]
    if json_output:
        print_json({"ref": ref, "path": str(path), "format": fmt})
    else:
        console().print(f"Wrote {ref} to {path} ({fmt}).")


@data_app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to tag.")],
    name: Annotated[str, typer.Argument(help="The tag, e.g. reviewed or gold.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the tag history.")] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Remove the tag instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Point a tag (NAME@tag) at a version; every move is audited and kept."""
    version = tag_version(get_store(ctx), ref, name, reason=reason, remove=remove)
    if json_output:
        print_json({"dataset": version.name, "tag": name, "version": None if remove else version.version})
        return
    console().print(
        f"{'Removed' if remove else 'Tagged'} {version.name}@{name}{'' if remove else f' → v{version.version}'}."
    )


@data_app.command("split")
def split(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to split.")],
    train: Annotated[float, typer.Option(help="Share of records for NAME-train.")] = 0.8,
    val: Annotated[float, typer.Option(help="Share for NAME-val.")] = 0.1,
    test: Annotated[float, typer.Option(help="Share for NAME-test.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the id hash that assigns records.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Split by a hash of each record id into NAME-train/-val/-test versions derived from REF."""
    fractions = {k: v for k, v in (("train", train), ("val", val), ("test", test)) if v > 0}
    with console().status(f"Splitting {ref}…"):
        parts = split_version(get_store(ctx), ref, fractions, seed=seed)
    if json_output:
        print_json({k: v.to_json() for k, v in parts.items()})
        return
    for split_name, version in parts.items():
        console().print(f"{split_name}: {version.ref} ({version.num_rows:,} records)")


@data_app.command("validate")
def validate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to check.")],
    expect: Annotated[Path, typer.Option(help="A YAML file of expectations (see docs/datasets.md).")],
    json_output: JsonOption = False,
) -> None:
    """Check a version against expectations; list every failure; exit 1 if any."""
    expectations = load_expectations(expect)
    report = validate_version(get_store(ctx), ref, expectations)
    if json_output:
        print_json(report.to_json())
    elif report.ok:
        console().print(f"{report.ref}: all {report.checked} expectations hold.")
    else:
        console().print(f"{report.ref}: {len(report.failures)} of {report.checked} expectations fail:")
        for failure in report.failures:
            console().print(f"  [red]✗[/] {failure['check']}: {failure['message']}")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("trace")
def trace(
    ctx: typer.Context,
    record_id: Annotated[str, typer.Argument(help="A record id.")],
    json_output: JsonOption = False,
) -> None:
    """A record's source, every version that holds it, everything made from them, and the answers that cited it."""
    from keel.monitor import traces_citing

    store = get_store(ctx)
    found = trace_record(store, record_id)
    cited_by = [{"trace": t.id, "at": format_time(t.at), "deployment": t.deployment, "model_version": t.model_version}
                for t in traces_citing(store, record_id)]  # fmt: skip
    if json_output:
        print_json({**found.to_json(), "cited_by": cited_by})
        return
    out = console()
    out.print(f"[bold]{found.record_id}[/]")
    if found.source:
        src = found.source
        out.print(f"source: {src.get('uri')} (sha256 {str(src.get('sha256'))[:12]}, fetched {src.get('fetched_at')})")
    if found.text_preview:
        out.print(f"text: {found.text_preview!r}")
    roots = [f"dataset-version:{ref}" for ref in found.versions]
    out.print(lineage_tree(f"in {len(found.versions)} version(s); downstream:", roots, found.downstream))
    if cited_by:
        out.print(f"cited by {len(cited_by)} served answer(s), newest first:")
        for answer in cited_by:
            out.print(escape(f"  trace:{answer['trace']}  {answer['at']}  {answer['deployment']}"))


@data_app.command("synthesize")
def synthesize_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The version whose documents are asked about: NAME@vN or NAME@tag.")],
    to: Annotated[str, typer.Option("--to", help="The dataset to commit the questions to.")],
    types: Annotated[
        str, typer.Option(help="Question types, comma-separated: factual, multi_hop, unanswerable.")
    ] = "factual,multi_hop,unanswerable",
    per_doc: Annotated[int, typer.Option("--per-doc", help="Questions of each type per document.")] = 2,
    limit: Annotated[int | None, typer.Option(help="At most this many rows kept.")] = None,
    seed: Annotated[int, typer.Option(help="Picks among equally good sentences and partner documents.")] = 0,
    generator: Annotated[
        str, typer.Option(help="`extractive` (offline, rule-based) or `model` (a model writes them).")
    ] = "extractive",
    prompt: Annotated[
        str | None, typer.Option(help="Prompt version for --generator model (default: synthesize-qa, shipped).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="A registered model NAME@vN, run in this process.")] = None,
    base_url: Annotated[str | None, typer.Option(help="An OpenAI-compatible API root (e.g. Keel's gateway).")] = None,
    model_name: Annotated[str | None, typer.Option(help="The model or deployment name sent to --base-url.")] = None,
    api_key: Annotated[str, typer.Option(help="Bearer key for --base-url (a Keel API key for the gateway).")] = (
        "not-needed"
    ),
    text_column: Annotated[str, typer.Option(help="The column holding each document's text.")] = "text",
    judge: Annotated[
        bool, typer.Option(help="Check answers against their context with the offline groundedness judge.")
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Generate question/answer/context rows from a version's documents, filter them, commit a derived version.

    Every row names its source record ids, the generator, model and prompt version; the same inputs and
    seed give the same rows. Drops are counted per filter: malformed model output, length, near-duplicate
    questions, and answers the groundedness judge finds unsupported (or, for unanswerable ones, supported).
    """
    from keel.curate import SynthesizeOptions, synthesize

    options = SynthesizeOptions(
        types=tuple(t.strip() for t in types.split(",") if t.strip()),
        per_doc=per_doc,
        limit=limit,
        seed=seed,
        generator=generator,  # type: ignore[arg-type]
        prompt=prompt,
        model=model,
        base_url=base_url,
        model_name=model_name,
        api_key=api_key,
        text_column=text_column,
        judge=judge,
    )
    store = get_store(ctx)
    if json_output:
        report = synthesize(store, source, to, options)
        print_json(report.to_json())
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(), transient=True) as bar:  # fmt: skip
        task = bar.add_task("Synthesizing (documents)", total=None)

        def advance(_label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = synthesize(store, source, to, options, advance)
    out = console()
    table = Table("type", "generated", "kept")
    for qtype, generated in report.generated.items():
        table.add_row(qtype, str(generated), str(report.kept.get(qtype, 0)))
    out.print(table)
    for reason, counts in sorted(report.dropped.items()):
        out.print(f"  dropped {escape(reason)}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    version = report.version
    assert version is not None
    made = f"Committed {version.ref}" if report.created else f"{version.ref} already holds exactly these rows"
    out.print(f"{made}: {version.num_rows:,} rows from {report.source} ({report.generator}) in {report.seconds:.1f}s.")
