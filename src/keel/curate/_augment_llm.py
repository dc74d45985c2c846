"""`paraphrase` and `back_translate`: new rows written by a model, served or loaded in process.

The model is either behind an OpenAI-compatible endpoint, Keel's gateway (`base_url: http://HOST:PORT/v1`,
`model:` a deployment name, `api_key:` a Keel API key) or any server speaking the OpenAI chat API (vLLM, a
hosted API), requests running `concurrency` at a time; or, without `base_url`, a registered model version
(`model: NAME@vN`) loaded in this process by transformers and run in batches of `batch_size`. Every answer is
cached on disk by sha256 of (where it came from, model, the rendered prompt with its input, sampling settings,
copy number), under the workspace's `.keel/cache/augment/` (or `cache_dir`), so a rerun sends no request and
writes the same bytes even when the model samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from keel.core.echo import shown
from keel.curate._augment_lineage import append_children, with_lineage_columns
from keel.curate._generate import (
    ChatBackend,
    GenerationCache,
    LocalModelBackend,
    OpenAIBackend,
    generate_cached,
    workspace_cache_root,
)
from keel.curate._step import Step, StepParams, StepResult

__all__ = ["BackTranslateStep", "GenerationCache", "ParaphraseStep"]

PARAPHRASE_PROMPT = (
    "Paraphrase the text below: keep its meaning and facts, change its wording. Answer with the paraphrase only.\n\n"
    "{text}"
)
TO_PIVOT_PROMPT = "Translate the text below into {language}. Answer with the translation only.\n\n{text}"
FROM_PIVOT_PROMPT = "Translate the text below into {language}. Answer with the translation only.\n\n{text}"


class ModelParams(StepParams):
    """Where the model is and how to sample it: shared by `paraphrase` and `back_translate`."""

    base_url: str | None = Field(
        None,
        description="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (Keel's gateway); "
        "omit it to load `model` (a registered NAME@vN) in this process.",
    )
    model: str = Field(
        min_length=1, description="Model or Keel deployment name sent as `model`; without base_url, a NAME@vN."
    )
    api_key: str = Field("not-needed", description="Bearer key (a Keel API key for the gateway).")
    copies: int = Field(1, ge=1, le=32, description="New rows per input row (copy k samples with seed + k).")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    seed: int = Field(0, description="Sent as the request's `seed`; part of the cache key.")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once.")
    timeout: float = Field(60.0, gt=0, description="Seconds per request.")
    batch_size: int = Field(16, ge=1, le=512, description="Rows per generate call of a local model.")
    cache_dir: Path | None = Field(
        None, description="Answer cache; default the workspace's .keel/cache/augment (no cache outside a workspace)."
    )
    workspace: Path | None = Field(
        None, description="The workspace (cache, local models); `keel curate run` sets it from -w or discovery."
    )
    augment_children: bool = Field(False, description="Also augment rows an earlier augmentation step made.")

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1; got {shown(url)}")
        return url.rstrip("/") if url else None

    @model_validator(mode="after")
    def _local_ref(self) -> ModelParams:
        if self.base_url is None and "@" not in self.model:
            raise ValueError(
                f"expected base_url (a served model) or model as a registered version NAME@vN (loaded in process); "
                f"got model {self.model!r} without base_url"
            )
        return self


class _ModelStep(Step):
    """What both model steps share: the client, the cache, concurrent generation and which rows to augment."""

    Params = ModelParams
    requires = ("openai",)
    adds_rows = True

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        self._cache: GenerationCache | None = None
        self._cache_resolved = False
        self._backend: ChatBackend | None = None

    def _answer_cache(self) -> GenerationCache | None:
        p: ModelParams = self.params  # type: ignore[assignment]
        if not self._cache_resolved:
            self._cache_resolved = True
            root = p.cache_dir or workspace_cache_root(p.workspace)
            self._cache = GenerationCache(root) if root is not None else None
        return self._cache

    def backend(self) -> ChatBackend:
        """The endpoint, or the local model (loaded once per step, on first use)."""
        p: ModelParams = self.params  # type: ignore[assignment]
        if self._backend is None:
            if p.base_url is not None:
                self._backend = OpenAIBackend(
                    p.base_url, api_key=p.api_key, timeout=p.timeout, concurrency=p.concurrency
                )
            else:
                self._backend = LocalModelBackend(p.workspace, p.model, batch_size=p.batch_size)
        return self._backend

    def _request(self, prompt: str, copy: int) -> dict[str, Any]:
        p: ModelParams = self.params  # type: ignore[assignment]
        return {
            "model": p.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "seed": p.seed + copy,
        }

    def generate(self, prompts: list[str], copies: list[int]) -> list[str | None]:
        """One answer per prompt (None where the request failed), from the cache or the model."""
        cache = self._answer_cache()
        if cache is None:
            self.count("cache.off_outside_workspace", len(prompts))
        requests = [self._request(prompt, copy) for prompt, copy in zip(prompts, copies, strict=True)]
        return generate_cached(self.backend(), cache, requests, lambda name, n: self.count(name, n), self.name)

    def _targets(self, table: pa.Table) -> list[tuple[int, int]]:
        """(row, copy) pairs to augment, in row order."""
        p: ModelParams = self.params  # type: ignore[assignment]
        parents = table.column("parent_id").to_pylist()
        rows = [i for i, parent in enumerate(parents) if parent is None or p.augment_children]
        return [(row, copy) for row in rows for copy in range(p.copies)]

    def _children(
        self, table: pa.Table, targets: list[tuple[int, int]], answers: list[str | None], details: list[dict[str, Any]]
    ) -> pa.Table:
        kept = [k for k, answer in enumerate(answers) if answer]
        self.count("no_answer", len(targets) - len(kept))
        return append_children(
            table,
            [targets[k][0] for k in kept],
            [answers[k] or "" for k in kept],
            self.name,
            [targets[k][1] for k in kept],
            [details[k] for k in kept],
        )


class ParaphraseStep(_ModelStep):
    """Append `copies` paraphrases of each row, written by the model; each names its parent."""

    name = "paraphrase"

    class Params(ModelParams):
        """Parameters of `paraphrase`."""

        prompt: str = Field(PARAPHRASE_PROMPT, description="The instruction; `{text}` stands for the row's text.")

        @field_validator("prompt")
        @classmethod
        def _has_text(cls, prompt: str) -> str:
            if "{text}" not in prompt:
                raise ValueError("expected the prompt to contain {text} where the row's text goes")
            return prompt

    def apply(self, table: pa.Table) -> StepResult:
        """The input rows, then the paraphrases (rows the model gave no answer for get none)."""
        p: ParaphraseStep.Params = self.params  # type: ignore[assignment]
        table = with_lineage_columns(table)
        texts = table.column("text").to_pylist()
        targets = self._targets(table)
        answers = self.generate([p.prompt.replace("{text}", texts[row]) for row, _ in targets], [c for _, c in targets])
        details = [{"model": p.model, "seed": p.seed + copy} for _, copy in targets]
        return StepResult(self._children(table, targets, answers, details))


class BackTranslateStep(_ModelStep):
    """Append back-translations: each row translated into `pivot`, then back into `language`."""

    name = "back_translate"

    class Params(ModelParams):
        """Parameters of `back_translate`."""

        pivot: str = Field("French", min_length=1, description="The language translated through.")
        language: str = Field("English", min_length=1, description="The language of the rows (and of the output).")
        temperature: float = Field(0.3, ge=0, le=2)
        to_pivot_prompt: str = Field(TO_PIVOT_PROMPT, description="`{text}` and `{language}` (the pivot).")
        from_pivot_prompt: str = Field(FROM_PIVOT_PROMPT, description="`{text}` (the pivot text) and `{language}`.")

        @field_validator("to_pivot_prompt", "from_pivot_prompt")
        @classmethod
        def _has_text(cls, prompt: str) -> str:
            if "{text}" not in prompt:
                raise ValueError("expected the prompt to contain {text} where the text to translate goes")
            return prompt

    def apply(self, table: pa.Table) -> StepResult:
        """The input rows, then their back-translations; `augment_detail` keeps the pivot text."""
        p: BackTranslateStep.Params = self.params  # type: ignore[assignment]
        table = with_lineage_columns(table)
        texts = table.column("text").to_pylist()
        targets = self._targets(table)
        copies = [c for _, c in targets]
        there = p.to_pivot_prompt.replace("{language}", p.pivot)
        pivots = self.generate([there.replace("{text}", texts[row]) for row, _ in targets], copies)
        back = p.from_pivot_prompt.replace("{language}", p.language)
        answers: list[str | None] = [None] * len(targets)
        asked = [k for k, pivot in enumerate(pivots) if pivot]
        for k, answer in zip(asked, self.generate([back.replace("{text}", pivots[k] or "") for k in asked],
                                                   [copies[k] for k in asked]), strict=True):  # fmt: skip
            answers[k] = answer
        details = [
            {"model": p.model, "pivot": p.pivot, "pivot_text": pivot, "seed": p.seed + copy}
            for (_, copy), pivot in zip(targets, pivots, strict=True)
        ]
        return StepResult(self._children(table, targets, answers, details))
