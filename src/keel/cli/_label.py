"""`keel label …`: label schemas, queues, labelling in the terminal, agreement, Label Studio/Argilla files, commit.

keel label QUEUE is short for `keel label annotate QUEUE`. The terminal session reads one key per answer on a
terminal (classes and ratings of up to ten keys) and one line per answer otherwise (piped input, spans,
free text, multi-label classes), so scripts and tests drive it through stdin.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.cli._label_weak import weak_app
from keel.core.errors import InputError

__all__ = ["label_app"]


class _LabelGroup(typer.core.TyperGroup):
    """keel label QUEUE runs `keel label annotate QUEUE`: a first word that is no command names a queue."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["annotate", *args]
        return super().resolve_command(ctx, args)


label_app = typer.Typer(
    cls=_LabelGroup,
    help="Label data: schemas, queues, annotation in the terminal, agreement, Label Studio/Argilla formats.",
    no_args_is_help=True,
)
schema_app = typer.Typer(help="Label schemas: what annotators answer about a dataset's items.", no_args_is_help=True)
queue_app = typer.Typer(help="Label queues: items of a dataset version or of traces, in labelling order.",
                        no_args_is_help=True)  # fmt: skip
label_app.add_typer(schema_app, name="schema")
label_app.add_typer(queue_app, name="queue")
label_app.add_typer(weak_app, name="weak")
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FormatOption = Annotated[Literal["label-studio", "argilla"], typer.Option("--format", help="The file format.")]


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if value else ()


@schema_app.command("set")
def schema_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset (or traces:DEPLOYMENT) whose items it labels.")],
    classes: Annotated[
        str | None, typer.Option(help="Classes, comma-separated: one per item (--multi: several).")
    ] = None,
    multi: Annotated[bool, typer.Option("--multi", help="With --classes: an item may take several classes.")] = False,
    spans: Annotated[
        str | None, typer.Option(help="Span classes, comma-separated (character offsets in the text).")
    ] = None,
    rating: Annotated[int | None, typer.Option(help="A rating from 1 to this number.")] = None,
    text: Annotated[bool, typer.Option("--text", help="A free-text answer.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Set the label schema of a dataset: --classes a,b,c | --spans PER,ORG | --rating 5 | --text."""
    from keel.label import LabelSchema, set_schema

    options = (("--classes", classes), ("--spans", spans), ("--rating", rating), ("--text", text))
    given = [k for k, v in options if v is not None and v is not False]  # `--rating 0` and `--classes ''` are given
    if len(given) != 1:
        raise InputError(f"expected exactly one of --classes, --spans, --rating or --text; got {given or 'none'}")
    if multi and classes is None:
        raise InputError("expected --multi only with --classes")
    if classes is not None:
        schema = LabelSchema("classes", _split(classes), multi=multi)
    elif spans is not None:
        schema = LabelSchema("spans", _split(spans))
    elif rating is not None:
        schema = LabelSchema("rating", scale=rating)
    else:
        schema = LabelSchema("text")
    set_schema(get_store(ctx), name, schema)
    if json_output:
        print_json({"name": name, **schema.to_json()})
        return
    console().print(escape(f"Label schema of {name}: {schema.describe()}"))


@schema_app.command("show")
def schema_show(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="The dataset (or traces:DEPLOYMENT); every schema if omitted.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Show a dataset's label schema (or every schema)."""
    from keel.label import get_schema, list_schemas

    store = get_store(ctx)
    found = {name: get_schema(store, name)} if name else list_schemas(store)
    if json_output:
        print_json({n: s.to_json() for n, s in found.items()})
        return
    for n, s in found.items():
        console().print(escape(f"{n}: {s.describe()}"))
    if not found:
        console().print("No label schemas yet: `keel label schema set DATASET --classes a,b` makes one.")


@queue_app.command("create")
def queue_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    source: Annotated[str, typer.Option("--from", help="data:NAME@vN (data:NAME: its latest) or traces:DEPLOYMENT.")],
    order: Annotated[
        Literal["sequential", "random", "uncertainty", "diversity"],
        typer.Option(help="Labelling order; uncertainty and diversity are active learning."),
    ] = "sequential",
    seed: Annotated[int, typer.Option(help="Seed of the random and active orders.")] = 0,
    annotators: Annotated[
        str | None, typer.Option(help="Principals to assign items to, comma-separated (default: anyone).")
    ] = None,
    overlap: Annotated[int, typer.Option(help="Annotators per item (2+ to measure agreement).")] = 1,
    field: Annotated[str, typer.Option(help="The column annotators read (dataset sources).")] = "text",
    since: Annotated[str | None, typer.Option(help="traces: only since this long ago (7d) or ISO time.")] = None,
    limit: Annotated[int | None, typer.Option(help="Keep the first N items of the order.")] = None,
    schema: Annotated[str | None, typer.Option(help="Use this dataset's label schema instead of the source's.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Make a queue of items to label from a dataset version or from a deployment's traces."""
    from keel.label import create_queue

    store = get_store(ctx)
    moment = None
    if since:
        from keel.monitor import parse_since

        moment = parse_since(since, store.clock())
    active = order not in ("sequential", "random")
    with console().status(f"Ordering items ({order})…") if active else contextlib.nullcontext():
        made = create_queue(store, name, source, order=order, seed=seed, annotators=_split(annotators),
                            overlap=overlap, text_field=field, since=moment, limit=limit, schema=schema)  # fmt: skip
    if json_output:
        print_json(made.to_json())
        return
    who = ", ".join(made.annotators) or "anyone"
    console().print(escape(f"Queue {made.name}: {made.size} items from {made.source} ({made.order}), "
                           f"{made.schema.describe()}; {made.overlap} per item, assigned to {who}. "
                           f"Label with `keel label {made.name}`."))  # fmt: skip


@queue_app.command("list")
def queue_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the label queues and how far each is."""
    from keel.label import list_queues, queue_progress

    store = get_store(ctx)
    found = [(q, queue_progress(store, q)) for q in list_queues(store)]
    if json_output:
        print_json([{**q.to_json(), "progress": p.to_json()} for q, p in found])
        return
    table = Table("queue", "source", "schema", "order", "items", "labelled", "complete", "skips")
    for q, p in found:
        table.add_row(escape(q.name), escape(q.source), escape(q.schema.describe()), q.order, str(p.items),
                      str(p.labelled_items), str(p.complete_items), str(p.skips))  # fmt: skip
    console().print(table if found else "No label queues yet: `keel label queue create NAME --from data:DATASET`.")


@queue_app.command("show")
def queue_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The queue.")],
    json_output: JsonOption = False,
) -> None:
    """Show a queue: its source, schema, order and each annotator's progress."""
    from keel.label import get_queue, queue_progress

    store = get_store(ctx)
    q = get_queue(store, name)
    p = queue_progress(store, q)
    if json_output:
        print_json({**q.to_json(), "progress": p.to_json()})
        return
    out = console()
    out.print(escape(f"{q.name}: {q.size} items from {q.source}, {q.schema.describe()}, {q.order} order "
                     f"(seed {q.seed}), {q.overlap} annotator(s) per item"))  # fmt: skip
    out.print(escape(f"labelled items {p.labelled_items}, complete {p.complete_items}, labels {p.labels}, "
                     f"skips {p.skips}"))  # fmt: skip
    table = Table("annotator", "labelled", "skipped", "left")
    for who, counts in p.annotators.items():
        table.add_row(escape(who), str(counts["labelled"]), str(counts["skipped"]), str(counts["left"]))
    if p.annotators:
        out.print(table)


# --- labelling ---------------------------------------------------------------------------------

_COMMANDS = {"s": "skip", ":s": "skip", "u": "undo", ":u": "undo", "q": "quit", ":q": "quit"}


def _read_answer(out: Console, single_key: bool) -> str | None:
    """One key on a terminal (classes, small ratings), else one line; None at end of input or Ctrl-C."""
    try:
        if single_key:
            import click

            key = click.getchar()
            if key in ("\x03", "\x04"):
                return None
            out.print(escape(key))
            return key
        line = sys.stdin.readline()
    except (KeyboardInterrupt, EOFError):
        return None
    return line.rstrip("\r\n") if line else None


def _screen() -> Console:
    """The session's console: the terminal's width, or 100 columns when the output is not a terminal."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 100)


def _show(out: Console, item: Any, queue: Any, done: int) -> None:
    out.rule(escape(f"{queue.name} · item {item.position + 1} of {queue.size} · {item.item_id} · {done} answered"))
    if item.prompt is not None:
        out.print(Panel(escape(item.prompt), title="prompt", title_align="left"))
    out.print(Panel(escape(item.text), title="answer" if item.prompt is not None else "text", title_align="left"))


def _help_line(schema: Any) -> str:
    keys = schema.keys()
    if keys and not schema.multi:
        choices = "  ".join(f"[{k}] {v}" for k, v in keys.items())
        return f"{choices}   ·   s skip · u undo · q quit"
    if schema.kind == "classes":
        return f"classes (keys or names, comma-separated): {', '.join(f'{k}={v}' for k, v in keys.items())}" \
               "   ·   :s skip · :u undo · :q quit"  # fmt: skip
    if schema.kind == "spans":
        return f"spans: LABEL=quoted text or LABEL:START-END, ';' between, '-' for none ({', '.join(schema.classes)})" \
               "   ·   :s skip · :u undo · :q quit"  # fmt: skip
    if schema.kind == "rating":
        return f"rating 1-{schema.scale}   ·   s skip · u undo · q quit"
    return "type the answer (one line)   ·   :s skip · :u undo · :q quit"


def _command_of(answer: str, schema: Any) -> str | None:
    command = _COMMANDS.get(answer.strip().lower())
    if command and (answer.startswith(":") or schema.kind in ("classes", "rating") and not schema.multi):
        return command
    return None


class _Session:
    """What the session shows: Rich panels for a person, or (`--json`) one JSON object per line for a program."""

    def __init__(self, queue: Any, as_json: bool) -> None:
        self.queue, self.as_json, self.out = queue, as_json, _screen()

    def say(self, event: str, message: str, /, **data: Any) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps({"event": event, **data}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            self.out.print(escape(message), style="red" if event == "error" else None)

    def show(self, item: Any, answered: int) -> None:
        if self.as_json:
            self.say("item", "", **item.to_json(), keys=self.queue.schema.keys())
            return
        _show(self.out, item, self.queue, answered)
        self.out.print(escape(_help_line(self.queue.schema)))
        self.out.print("> ", end="")


@label_app.command("annotate")
def annotate(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue to label.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per event (item, label, "
                                                             "skip, undo, error, end) instead of panels.")] = False,
) -> None:  # fmt: skip
    """Label a queue's items in the terminal, from where you left off (also: keel label QUEUE).

    Each answer is stored the moment it is given; `s` skips, `u` undoes your last answer, `q` quits.
    """
    from keel.label import get_queue, next_item, record_label, skip_item, undo_last

    store = get_store(ctx)
    q = get_queue(store, queue)
    session = _Session(q, json_output)
    schema = q.schema
    single_key = sys.stdin.isatty() and bool(schema.keys()) and not schema.multi and not json_output
    session.say("start", f"Labelling {q.name} as {store.actor}: {schema.describe()}", queue=q.name,
                annotator=store.actor, schema=schema.to_json())  # fmt: skip
    answered = 0
    while (item := next_item(store, q)) is not None:
        session.show(item, answered)
        answer = _read_answer(session.out, single_key)
        command = None if answer is None else _command_of(answer, schema)
        if answer is None or command == "quit":
            session.say("end", f"Stopped; {answered} answered this session. `keel label annotate {q.name}` resumes.",
                        answered=answered, reason="quit")  # fmt: skip
            return
        if command == "skip":
            skipped = skip_item(store, q, item.position, origin="terminal")
            session.say("skip", f"Skipped item {item.position + 1}.", **skipped.to_json())
        elif command == "undo":
            undone = undo_last(store, q)
            text = (
                f"Undid your answer on item {undone.position + 1} ({undone.item_id})." if undone else "Nothing to undo."
            )
            session.say("undo", text, label=undone.to_json() if undone else None)
            answered = max(0, answered - (1 if undone else 0))
            continue
        else:
            try:
                made = record_label(store, q, item.position, answer, origin="terminal")
            except InputError as exc:
                session.say("error", f"Not stored: {exc}", message=str(exc))
                continue
            session.say("label", f"✓ {made.value}", **made.to_json())
        answered += 1
    session.say("end", f"Nothing left for you in {q.name}; {answered} answered this session.", answered=answered,
                reason="done")  # fmt: skip


@label_app.command("add")
def add(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue.")],
    item: Annotated[str, typer.Argument(help="The item's id (the record's or the trace's id).")],
    label: Annotated[
        str | None,
        typer.Option(help="The answer: a class (a,b for multi), a rating, spans (LABEL=text; LABEL:0-5) or text."),
    ] = None,
    skip: Annotated[bool, typer.Option("--skip", help="Record a skip instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Label one item of a queue (for scripts)."""
    from keel.label import get_queue, position_of, record_label, skip_item

    if (label is None) == (not skip):
        raise InputError("expected exactly one of --label or --skip")
    store = get_store(ctx)
    q = get_queue(store, queue)
    position = position_of(store, q, item)
    made = skip_item(store, q, position) if skip else record_label(store, q, position, label)
    if json_output:
        print_json(made.to_json())
        return
    console().print(escape(f"{made.annotator} {made.status} {made.item_id} in {q.name}"
                           + (f": {made.value}" if made.value is not None else "")))  # fmt: skip


@label_app.command("list")
def list_command(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue.")],
    annotator: Annotated[str | None, typer.Option(help="Only this annotator's answers.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the answers given in a queue."""
    from keel.label import get_queue, list_labels

    store = get_store(ctx)
    found = list_labels(store, get_queue(store, queue), annotator=annotator)
    if json_output:
        print_json([lb.to_json() for lb in found])
        return
    table = Table("item", "id", "annotator", "status", "answer", "via", "time (UTC)")
    for lb in found:
        table.add_row(str(lb.position + 1), escape(lb.item_id), escape(lb.annotator), lb.status,
                      escape(str(lb.value if lb.value is not None else "—"))[:80], lb.origin,
                      lb.to_json()["at"][:19])  # fmt: skip
    console().print(table if found else f"No answers in {queue} yet: `keel label {queue}` starts labelling.")


@label_app.command("agreement")
def agreement_command(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="The queue.")], json_output: JsonOption = False
) -> None:
    """Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, Krippendorff's alpha, per-class confusion."""
    from keel.label import agreement, get_queue

    store = get_store(ctx)
    report = agreement(store, get_queue(store, queue))
    if json_output:
        print_json(report.to_json())
        return
    out = console()
    out.print(escape(f"{report.queue}: {report.items} items labelled by 2+ of {len(report.annotators)} annotators"))
    for pair in report.pairwise:
        out.print(escape(f"  Cohen's kappa {pair['a']} × {pair['b']}: {pair['kappa']:.3f} "
                         f"(observed agreement {pair['observed']:.1%} on {pair['items']} items)"))  # fmt: skip
    if report.fleiss_kappa:
        f = report.fleiss_kappa
        out.print(escape(f"  Fleiss' kappa: {f['value']:.3f} ({f['items']} items with {f['raters']} raters each)"))
    if report.krippendorff_alpha:
        a = report.krippendorff_alpha
        extra = f", interval {a['interval']:.3f}" if "interval" in a else ""
        out.print(escape(f"  Krippendorff's alpha (nominal): {a['value']:.3f}{extra} over {a['items']} items"))
    if report.confusion and len(report.categories) <= 20:
        c = report.confusion
        title = f"rows {c['rows']}, columns {c['columns']}" if c["kind"] == "pair" else "coincidences (all pairs)"
        table = Table(escape(title), *[escape(x) for x in report.categories], "agreement")
        for name, row in zip(report.categories, c["matrix"], strict=True):
            share = report.per_class.get(name, {}).get("agreement")
            table.add_row(escape(name), *[f"{v:g}" for v in row], "—" if share is None else f"{share:.1%}")
        out.print(table)


@label_app.command("export")
def export(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue.")],
    fmt: FormatOption,
    output: Annotated[Path, typer.Option("-o", "--output", help="The JSON file to write.", dir_okay=False)],
    config: Annotated[
        Path | None, typer.Option(help="label-studio: also write the labelling config (XML) here.", dir_okay=False)
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write a queue's items and labels as Label Studio tasks or Argilla records (JSON)."""
    from keel.label import export_labels, get_queue, label_studio_config

    store = get_store(ctx)
    q = get_queue(store, queue)
    count = export_labels(store, q, output, format=fmt)
    if config is not None:
        config.write_text(label_studio_config(q.schema), encoding="utf-8")
    if json_output:
        print_json({"queue": q.name, "format": fmt, "items": count, "file": str(output)})
        return
    console().print(escape(f"Wrote {count} items of {q.name} to {output} ({fmt})"))


@label_app.command("import")
def import_command(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue whose items the file labels.")],
    file: Annotated[Path, typer.Argument(help="A Label Studio JSON export or Argilla records JSON.", dir_okay=False)],
    fmt: FormatOption,
    json_output: JsonOption = False,
) -> None:
    """Store the labels of a Label Studio or Argilla JSON file on the queue's matching items."""
    from keel.label import get_queue, import_labels

    store = get_store(ctx)
    report = import_labels(store, get_queue(store, queue), file, format=fmt)
    if json_output:
        print_json(report.to_json())
        return
    ignored = "".join(f", {v} {k} ignored" for k, v in report.ignored.items())
    console().print(escape(f"Imported {report.labels} labels and {report.skips} skips into {report.queue}; "
                           f"{report.unmatched_items} items of the file not in the queue{ignored}"))  # fmt: skip


@label_app.command("commit")
def commit(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue.")],
    to: Annotated[str, typer.Option("--to", help="The dataset to commit the labelled rows to.")],
    resolve: Annotated[
        str, typer.Option(help="majority, or annotator:PRINCIPAL to keep one person's answers.")
    ] = "majority",
    message: Annotated[str | None, typer.Option(help="The version's message.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Commit the labelled items as a new dataset version derived from the source (rows name their annotators)."""
    from keel.label import commit_labels, get_queue

    store = get_store(ctx)
    result = commit_labels(store, get_queue(store, queue), to, resolve=resolve, message=message)
    if json_output:
        print_json(result.to_json())
        return
    verb = "Committed" if result.new else "Unchanged:"
    left = ", ".join(f"{v} {k}" for k, v in result.left_out.items())
    console().print(escape(f"{verb} {result.version}: {result.rows} labelled rows ({result.resolve})"
                           + (f"; left out {left}" if left else "")))  # fmt: skip
