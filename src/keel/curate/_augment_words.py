"""`synonym` and `eda`: word-level augmentation (Wei & Zou 2019, "EDA") with an offline lexicon.

The lexicon is WordNet 3.0's synonyms (the other one-word lemmas of each word's three most frequent senses per
part of speech: 7,736 words), the file Keel already ships for its offline judge (keel/evals/data/
wordnet_lexicon.json, built by scripts/build_wordnet_lexicon.py; licence beside it). No PyPI package installs
WordNet's data offline (`wn` and `nltk` download it at run time); Debian's `wordnet-base` does, but is not
needed. `lexicon_file` replaces it with a JSON object {word: [synonyms]} of your own.

Each row's edits come from a random generator seeded by (seed, row id, copy), so they do not depend on how rows
are batched or sharded: the same input and seed give the same rows.
"""

from __future__ import annotations

import json
import random
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field

from keel.core.errors import InputError
from keel.core.ids import sha256_hex
from keel.core.settings import read_text_file
from keel.curate._augment_lineage import append_children, with_lineage_columns
from keel.curate._step import Step, StepParams, StepResult

__all__ = ["EdaStep", "SynonymStep", "eda_edit", "load_lexicon"]

Operation = Literal["synonym", "insert", "swap", "delete"]
OPERATIONS: tuple[Operation, ...] = ("synonym", "insert", "swap", "delete")
# Words EDA leaves alone when replacing or inserting (its paper uses a stop-word list the same way).
_STOPWORDS = frozenset(
    "a an the and or but if of at by for with about to from in on off out over under is are was were be been being "
    "am do does did have has had i me my we our you your he him his she her it its they them their this that these "
    "those what which who whom as not no nor so than too very can will just should would could may might must".split()
)
_TOKEN = re.compile(r"^(\W*)(\w[\w'-]*\w|\w)(\W*)$")


@cache
def _shipped_lexicon() -> dict[str, tuple[str, ...]]:
    data = json.loads(resources.files("keel.evals").joinpath("data", "wordnet_lexicon.json").read_text())
    return {word: tuple(others) for word, others in data["synonyms"].items()}


def load_lexicon(path: Path | None) -> dict[str, tuple[str, ...]]:
    """The synonyms by lowercase word: the shipped WordNet lexicon, or the JSON object at `path`."""
    if path is None:
        return _shipped_lexicon()
    text = read_text_file(path, "lexicon_file", error=InputError)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"expected JSON {{word: [synonyms]}} in lexicon_file {path}; it is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(
            f"expected a JSON object {{word: [synonyms, ...]}} in lexicon_file {path}; found another shape"
        )
    return {str(word).lower(): tuple(str(s) for s in others if s) for word, others in data.items()}


def _rng(seed: int, record_id: str, copy: int) -> random.Random:
    return random.Random(int(sha256_hex(f"{seed}\x00{record_id}\x00{copy}")[:16], 16))


def _match_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word


def _candidates(tokens: list[str], lexicon: dict[str, tuple[str, ...]]) -> list[int]:
    out = []
    for i, token in enumerate(tokens):
        m = _TOKEN.match(token)
        if m and m.group(2).lower() not in _STOPWORDS and lexicon.get(m.group(2).lower()):
            out.append(i)
    return out


def eda_edit(
    text: str, op: Operation, n: int, rng: random.Random, lexicon: dict[str, tuple[str, ...]]
) -> tuple[str, int]:
    """`text` after `n` edits of kind `op` (fewer where the text offers fewer), and how many were made.

    Words are whitespace-separated tokens; punctuation around a replaced word stays, and case follows the word
    replaced. The output's words are joined by single spaces.

    Examples:
        >>> eda_edit("The quick answer", "synonym", 1, random.Random(0), {"quick": ("fast",)})
        ('The fast answer', 1)
    """
    tokens = text.split()
    made = 0
    if op == "synonym":
        for i in rng.sample(_candidates(tokens, lexicon), k=min(n, len(_candidates(tokens, lexicon)))):
            m = _TOKEN.match(tokens[i])
            assert m is not None
            word = rng.choice(lexicon[m.group(2).lower()])
            tokens[i] = m.group(1) + _match_case(word, m.group(2)) + m.group(3)
            made += 1
    elif op == "insert":
        for _ in range(n):
            found = _candidates(tokens, lexicon)
            if not found:
                break
            m = _TOKEN.match(tokens[rng.choice(found)])
            assert m is not None
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(lexicon[m.group(2).lower()]))
            made += 1
    elif op == "swap":
        for _ in range(n if len(tokens) > 1 else 0):
            i, j = rng.sample(range(len(tokens)), 2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
            made += 1
    else:  # delete: each word with probability n / len(tokens), keeping at least one
        share = n / max(len(tokens), 1)
        kept = [t for t in tokens if rng.random() >= share]
        if tokens and not kept:
            kept = [rng.choice(tokens)]
        made, tokens = len(tokens) - len(kept), kept
    return " ".join(tokens), made


class _WordParams(StepParams):
    share: float = Field(0.1, gt=0, le=1, description="Share of a row's words to edit (at least one edit).")
    copies: int = Field(1, ge=1, le=32, description="New rows per input row.")
    seed: int = Field(0, description="Seeds the edits (with each row's id and copy number).")
    lexicon_file: Path | None = Field(
        None, description="JSON {word: [synonyms]} replacing the shipped WordNet 3.0 synonyms."
    )
    augment_children: bool = Field(False, description="Also augment rows an earlier augmentation step made.")


class _WordStep(Step):
    adds_rows = True
    operations: tuple[Operation, ...] = ("synonym",)

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        p: _WordParams = params  # type: ignore[assignment]
        self._lexicon = load_lexicon(p.lexicon_file)

    def _operations(self) -> tuple[Operation, ...]:
        return self.operations

    def apply(self, table: pa.Table) -> StepResult:
        """The input rows, then one edited copy per (row, copy); a copy no edit changed is not added."""
        p: _WordParams = self.params  # type: ignore[assignment]
        table = with_lineage_columns(table)
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        parents, copies, out, details = [], [], [], []
        ops = self._operations()
        for row, (record_id, text, parent) in enumerate(
            zip(ids, texts, table.column("parent_id").to_pylist(), strict=True)
        ):
            if parent is not None and not p.augment_children:
                continue
            words = len(text.split())
            for copy in range(p.copies):
                op = ops[copy % len(ops)]
                rng = _rng(p.seed, record_id, copy)
                edited, made = eda_edit(text, op, max(1, round(p.share * words)), rng, self._lexicon)
                if not made or edited == text:
                    self.count(f"unchanged.{op}")
                    continue
                self.count(f"made.{op}")
                parents.append(row)
                copies.append(copy)
                out.append(edited)
                details.append({"op": op, "edits": made, "seed": p.seed})
        return StepResult(append_children(table, parents, out, self.name, copies, details))


class SynonymStep(_WordStep):
    """Append copies of each row with a share of its words replaced by WordNet synonyms."""

    name = "synonym"
    Params = _WordParams


class EdaParams(_WordParams):
    """Parameters of `eda`."""

    operations: list[Operation] = Field(
        default_factory=lambda: list(OPERATIONS),
        min_length=1,
        description="EDA's four operations; copy k of a row uses operations[k % len(operations)].",
    )
    copies: int = Field(4, ge=1, le=32, description="New rows per input row.")


class EdaStep(_WordStep):
    """EDA: synonym replacement, random insertion of a synonym, random swap and random deletion of words."""

    name = "eda"
    Params = EdaParams

    def _operations(self) -> tuple[Operation, ...]:
        p: EdaParams = self.params  # type: ignore[assignment]
        return tuple(p.operations)
