"""Training examples from dataset versions: chat `messages`, `prompt`/`completion`, or preference triples.

Supervised rows become token ids with the prompt masked out of the labels (loss on the answer only);
preference rows stay as text for trl's DPOTrainer. This module knows nothing of runs or models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from keel.core.errors import InputError
from keel.store import Store

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DataForm",
    "dataset_table",
    "dataset_node",
    "dataset_texts",
    "detect_form",
    "preference_rows",
    "supervised_pairs",
    "tokenize_pairs",
]

DataForm = Literal["messages", "completion", "preference", "text"]
IGNORE_INDEX = -100


def dataset_table(store: Store, ref: str) -> tuple[pa.Table, str]:
    """Read a dataset version through `keel.data`.

    Returns:
        The table and the version's lineage node id.
    """
    from keel.data import get_version, load_version

    version = get_version(store, ref)
    return load_version(store, version.ref), str(version.node)


def dataset_node(store: Store, ref: str) -> str:
    """The lineage node id of a dataset version ref."""
    from keel.data import get_version

    return str(get_version(store, ref).node)


def detect_form(columns: Sequence[str]) -> DataForm:
    """Which training form a table's columns hold.

    Examples:
        >>> detect_form(["id", "prompt", "chosen", "rejected"])
        'preference'
    """
    names = set(columns)
    if {"prompt", "chosen", "rejected"} <= names:
        return "preference"
    if "messages" in names:
        return "messages"
    if {"prompt", "completion"} <= names:
        return "completion"
    if "text" in names:
        return "text"
    raise InputError(
        f"expected training columns `messages`, `prompt`+`completion`, `prompt`+`chosen`+`rejected` or `text`; "
        f"found {sorted(names)}",
        hint="curate the dataset into one of these forms and commit a new version",
    )


def _messages(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise InputError(f"expected `messages` to be a list of {{role, content}} objects; got {str(value)[:80]!r}")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def dataset_texts(store: Store, ref: str) -> tuple[list[str], str]:
    """Plain texts of a dataset version, whatever its form (for tokenizer and tiny-model training)."""
    table, node = dataset_table(store, ref)
    form = detect_form(table.column_names)
    rows = table.to_pylist()
    if form == "text":
        return [str(r["text"]) for r in rows if r.get("text")], node
    if form == "messages":
        return ["\n".join(m["content"] for m in _messages(r["messages"])) for r in rows], node
    if form == "completion":
        return [f"{r['prompt']}{r['completion']}" for r in rows], node
    return [f"{r['prompt']}{r['chosen']}" for r in rows], node


def supervised_pairs(rows: Sequence[dict[str, Any]], form: DataForm, tokenizer: Any) -> list[tuple[str, str]]:
    """`(prompt, answer)` text pairs: chat rows through the tokenizer's chat template, the last turn the answer."""
    pairs: list[tuple[str, str]] = []
    eos = tokenizer.eos_token or ""
    for row in rows:
        if form == "messages":
            messages = _messages(row["messages"])
            if len(messages) < 2 or messages[-1]["role"] != "assistant":
                raise InputError(
                    "expected each `messages` row to end with an assistant turn after at least one other turn; "
                    f"found roles {[m['role'] for m in messages]}"
                )
            prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            pairs.append((str(prompt), messages[-1]["content"] + eos))
        elif form == "completion":
            pairs.append((str(row["prompt"]), str(row["completion"]) + eos))
        elif form == "text":
            pairs.append(("", str(row["text"]) + eos))
        else:
            pairs.append((str(row["prompt"]), str(row["chosen"]) + eos))
    return pairs


def tokenize_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Token ids and labels (prompt tokens masked), truncated to `max_length`."""
    examples = []
    for prompt, answer in pairs:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = (prompt_ids + answer_ids)[:max_length]
        labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
        if any(label != IGNORE_INDEX for label in labels):
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise InputError(
            f"expected training examples with answer tokens within max_length={max_length}; every prompt filled it",
            hint="raise `max_length` in the config or shorten the prompts",
        )
    return examples


def preference_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows for DPO: `prompt`, `chosen`, `rejected` as text."""
    return [{"prompt": str(r["prompt"]), "chosen": str(r["chosen"]), "rejected": str(r["rejected"])} for r in rows]
