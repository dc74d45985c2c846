"""Text generation for augmentation and synthesis: an OpenAI-compatible endpoint or a registered local model.

Both backends take chat requests (`model`, `messages`, `temperature`, `max_tokens`, `seed`) and answer a list
of them at once: the endpoint `concurrency` requests in flight, the local model (loaded in process through
transformers from the workspace's registry) in padded batches. `generate_cached` puts `GenerationCache` in
front: answers are keyed by sha256 of the request *and* the backend's identity (the endpoint's base URL, or
the model version's manifest digest), so two endpoints serving one model name never share answers. The
cache sits under the workspace's `.keel/cache/augment/`, where `keel govern erase` looks for personal values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from keel.core.errors import InputError, WorkspaceNotFoundError
from keel.core.ids import canonical_json, sha256_hex
from keel.core.settings import load_settings

__all__ = [
    "CACHE_SUBDIR",
    "ChatBackend",
    "GenerationCache",
    "LocalModelBackend",
    "OpenAIBackend",
    "generate_cached",
    "workspace_cache_root",
]

CACHE_SUBDIR = ("cache", "augment")


class GenerationCache:
    """Model answers on disk, one small JSON file per key (`ab/abcd….json`), written atomically.

    One file per answer lets worker processes share the cache without a lock: two writers of one key write the
    same answer or the first stays (os.replace is atomic).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        """The cache key of one request: sha256 of its canonical JSON."""
        return sha256_hex(canonical_json(request))

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached answer, or None."""
        try:
            return str(json.loads(self._path(key).read_text(encoding="utf-8"))["answer"])
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, request: dict[str, Any], answer: str) -> None:
        """Store `answer` (with its request, for audit)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"request": request, "answer": answer}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def files(self) -> Iterator[Path]:
        """Every cached answer's file."""
        if self.root.is_dir():
            yield from sorted(self.root.glob("*/*.json"))

    def holding(self, values: Sequence[str]) -> list[Path]:
        """The files whose request or answer contains any of `values` (case-insensitive), for erasure."""
        needles = [v.casefold() for v in values if v]
        found = []
        for path in self.files():
            try:
                # Decoded, so a value JSON would escape (quotes, non-ASCII under ensure_ascii) is still found.
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            text = (canonical_json(entry.get("request")) + "\x00" + str(entry.get("answer", ""))).casefold()
            raw = json.dumps(entry, ensure_ascii=False).casefold()
            if any(n in text or n in raw for n in needles):
                found.append(path)
        return found


def workspace_cache_root(workspace: Path | None = None) -> Path | None:
    """The generation cache of a workspace (found from KEEL_WORKSPACE or the cwd when None), or None outside one."""
    try:
        return load_settings(workspace).state_dir.joinpath(*CACHE_SUBDIR)
    except WorkspaceNotFoundError:
        return None


class ChatBackend(Protocol):
    """Something that answers chat requests: an endpoint or a model in this process."""

    identity: dict[str, Any]  # part of every cache key: where the answers come from

    def complete(self, requests: Sequence[dict[str, Any]]) -> list[str | Exception]:
        """One answer per request, or the error that request met."""
        ...


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint (Keel's gateway, vLLM, a hosted API), `concurrency` requests at once."""

    def __init__(
        self, base_url: str, *, api_key: str = "not-needed", timeout: float = 60.0, concurrency: int = 8
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key, self.timeout, self.concurrency = api_key, timeout, concurrency
        self.identity = {"base_url": self.base_url}

    def complete(self, requests: Sequence[dict[str, Any]]) -> list[str | Exception]:
        """Send every request (a client per call: steps have no end-of-run hook to close a kept one)."""
        from openai import OpenAI, OpenAIError

        def call(client: Any, request: dict[str, Any]) -> str | Exception:
            try:
                response = client.chat.completions.create(**request)
            except OpenAIError as exc:
                return exc
            return (response.choices[0].message.content or "").strip() if response.choices else ""

        if not requests:
            return []
        from openai import APIConnectionError, APITimeoutError

        client = OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=2)
        with client:
            # The first request goes alone: an endpoint that cannot be reached fails it (after the client's
            # retries) and every other request is answered with that error at once, instead of each one waiting
            # out its own retries against a server that is not there. A slow answer (a timeout) stops nothing.
            first = call(client, requests[0])
            unreachable = isinstance(first, APIConnectionError) and not isinstance(first, APITimeoutError)
            if unreachable or len(requests) == 1:
                return [first] * len(requests)
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests) - 1)) as pool:
                return [first, *pool.map(lambda request: call(client, request), requests[1:])]

    def describe(self) -> str:
        """Where requests go, for error messages."""
        return self.base_url


class LocalModelBackend:
    """A registered model version (`NAME@vN`) loaded in this process by transformers, generating in batches.

    Greedy at temperature 0; otherwise sampled, seeded by the batch's first request, so one batch composition
    gives one answer (the cache then keeps reruns identical). Prompts go through the tokenizer's chat template
    when it has one, as plain text otherwise.
    """

    def __init__(self, workspace: Path | None, ref: str, *, batch_size: int = 16) -> None:
        from keel.registry import get_model
        from keel.store import open_store

        try:
            self.settings = load_settings(workspace)
        except WorkspaceNotFoundError:
            raise InputError(
                f"a local model ({ref}) is loaded from a workspace's registry, and no workspace was found",
                hint="run inside a workspace (or pass -w), or give base_url to call a served model instead",
            ) from None
        store = open_store(self.settings)
        try:
            version = get_model(store, ref, with_files=False)
        finally:
            store.close()
        self.ref, self.batch_size = version.ref, batch_size
        self.identity = {"local_model": version.ref, "manifest": version.manifest_digest}
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        """The model and tokenizer, loaded on first use (a run answered wholly from the cache never loads them)."""
        if self._loaded is None:
            from keel.store import open_store
            from keel.train._models import load_model

            store = open_store(self.settings)
            try:
                model, tokenizer = load_model(store, self.ref)
            finally:
                store.close()
            tokenizer.padding_side = "left"  # generation continues from the right end of every row
            self._loaded = (model, tokenizer)
        return self._loaded

    @property
    def model(self) -> Any:
        """The transformers model (loaded on first use)."""
        return self._load()[0]

    @property
    def tokenizer(self) -> Any:
        """Its tokenizer (loaded on first use)."""
        return self._load()[1]

    def describe(self) -> str:
        """What answers, for error messages."""
        return f"local model {self.ref}"

    def _text(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        return "\n".join(m["content"] for m in messages)

    def complete(self, requests: Sequence[dict[str, Any]]) -> list[str | Exception]:
        """Answer `batch_size` requests per `generate` call (requests grouped by their sampling settings)."""
        import torch

        answers: list[str | Exception] = [""] * len(requests)
        groups: dict[tuple[float, int], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((float(request.get("temperature", 0.0)), int(request["max_tokens"])), []).append(i)
        texts_of = {i: self._text(r["messages"]) for i, r in enumerate(requests)}
        for (temperature, max_tokens), members in groups.items():
            members.sort(key=lambda i: (len(texts_of[i]), i))  # similar lengths share a batch: less padding
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                texts = [texts_of[i] for i in batch]
                encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                sample = temperature > 0
                if sample:
                    torch.manual_seed(int(requests[batch[0]].get("seed") or 0))
                with torch.no_grad():
                    out = self.model.generate(
                        **encoded,
                        max_new_tokens=max_tokens,
                        do_sample=sample,
                        **({"temperature": temperature} if sample else {}),
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    )
                width = encoded["input_ids"].shape[1]
                for row, i in enumerate(batch):
                    answers[i] = self.tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        return answers


def generate_cached(
    backend: ChatBackend,
    cache: GenerationCache | None,
    requests: Sequence[dict[str, Any]],
    count: Callable[[str, int], None],
    what: str = "generation",
) -> list[str | None]:
    """One answer per request (None where it failed), from the cache or the backend; new answers are cached.

    Args:
        backend: Where answers come from.
        cache: The answer cache, or None (no caching).
        requests: Chat requests (`model`, `messages`, `temperature`, `max_tokens`, `seed`).
        count: Called with (counter name, amount): `cache.hits`, `requests`, `failed.<Error>`.
        what: Who asks, for the error message.

    Raises:
        InputError: Every request sent failed (the endpoint is unreachable or refuses them all).
    """
    keys = [GenerationCache.key({**r, "backend": backend.identity}) for r in requests]
    answers: list[str | None] = [cache.get(k) if cache else None for k in keys]
    todo = [i for i, a in enumerate(answers) if a is None]
    count("cache.hits", len(requests) - len(todo))
    if not todo:
        return answers
    results = backend.complete([requests[i] for i in todo])
    errors = [r for r in results if isinstance(r, Exception)]
    if errors and len(errors) == len(todo):
        first = str(errors[0]).splitlines()[0] if str(errors[0]) else ""
        where = backend.describe() if hasattr(backend, "describe") else str(backend.identity)
        raise InputError(
            f"{what}: every request to {where} (model {requests[todo[0]].get('model')!r}) failed; first error: "
            f"{type(errors[0]).__name__}: {first}",
            hint="check the base URL, model name and API key (the server must speak the OpenAI chat API)",
        )
    for i, result in zip(todo, results, strict=True):
        if isinstance(result, Exception):
            count(f"failed.{type(result).__name__}", 1)
            continue
        answers[i] = result
        if cache is not None:
            cache.put(keys[i], {**requests[i], "backend": backend.identity}, result)
    count("requests", len(todo))
    return answers
