"""The `llama.cpp` backend: a GGUF model version served in process by llama-cpp-python.

It answers like the `transformers` backend (same request checks, OpenAI shapes, streaming, per-request
temperature, top-p, seed and stop strings; parameters it cannot honour are refused) because it is that
backend with two parts swapped: prompts are rendered with the chat template stored in the GGUF file
(llama-cpp-python's `Jinja2ChatFormatter`) and tokenised by llama.cpp, and generation runs in one
llama.cpp thread, one request at a time (a `Llama` holds one sequence; requests queue in order).
Sampling is the OpenAI one: temperature 0 is greedy, otherwise temperature and top-p only (llama.cpp's
top-k, min-p and repeat penalty are turned off). llama_cpp is imported when a backend is built.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Any, cast

from keel.serve._batching import GenerationJob, GenerationResult, JobThread, _put, _settle
from keel.serve._errors import GatewayError
from keel.serve._local import TransformersBackend

__all__ = ["LLAMA_CPP_HINT", "LlamaCppBackend"]

log = logging.getLogger(__name__)
LLAMA_CPP_HINT = (
    "install llama-cpp-python (the `llamacpp` extra; it builds from source in about 5 minutes): "
    "CMAKE_ARGS=\"-DLLAVA_BUILD=OFF\" pip install 'keel-llmops[llamacpp]'"
)


class LlamaCppMissingError(GatewayError):
    """The route asks for the llama.cpp backend, and llama-cpp-python is not installed."""

    status = 503
    code = "backend_unavailable"


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise LlamaCppMissingError(f"the llama.cpp backend needs llama-cpp-python; {LLAMA_CPP_HINT}") from None
    return llama_cpp


class _GgufTokenizer:
    """What `TransformersBackend` asks of a tokenizer, answered from the GGUF file by llama.cpp."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self.bos_token_id = llm.token_bos() if llm.token_bos() >= 0 else None
        self.chat_template = llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if self.chat_template:
            self._formatter = Jinja2ChatFormatter(
                self.chat_template, eos_token=self._text(llm.token_eos()), bos_token=self._text(llm.token_bos())
            )

    def _text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        assert self._formatter is not None
        return str(self._formatter(messages=cast(Any, messages)).prompt)

    def __call__(self, text: str) -> dict[str, list[int]]:
        # Special tokens written in the text (the template's markers) parse as themselves, and the
        # model's own add-BOS setting applies, as `tokenizer(text)` does in transformers.
        return {"input_ids": list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))}

    def decode(self, tokens: list[int]) -> str:
        return str(self.llm.detokenize(tokens).decode("utf-8", "replace"))


class _LlamaEngine(JobThread):
    """Runs jobs one after another in one thread, streaming each one's text as it is generated."""

    thread_name = "keel-llama-cpp"

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self.llm, self._llama_cpp = llm, llama_cpp
        self.step_rows: list[int] = []
        self.admitted = 0
        self.lock = threading.Lock()  # held while the model runs
        self._start_queue()

    def close(self) -> None:
        """Stop after the current job; waiting jobs are cancelled; the model is freed."""
        self._stop_thread(timeout=None)
        with self.lock:
            self.llm.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    for job in self._waiting:
                        job.loop.call_soon_threadsafe(job.future.cancel)
                    return
                job = self._waiting.popleft()
            if job.abandoned:
                continue
            self.admitted += 1
            try:
                with self.lock:
                    self._generate(job)
            except Exception as exc:  # request boundary: this request fails, the engine goes on
                log.exception("llama.cpp generation failed")
                job.loop.call_soon_threadsafe(_settle, job.future, exc)

    def _generate(self, job: GenerationJob) -> None:
        llm = self.llm
        llm.set_seed(job.seed if job.seed is not None else random.getrandbits(32))
        greedy = job.temperature <= 0
        tokens: list[int] = []
        text, sent, finish = "", 0, "length"
        held = max((len(s) - 1 for s in job.stop), default=0)  # text that may begin a stop string waits
        sampled = llm.generate(
            job.ids, temp=0.0 if greedy else job.temperature, top_p=1.0 if greedy else job.top_p,
            top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, reset=True,
        )  # fmt: skip
        for token in sampled:
            self.step_rows.append(1)
            if job.abandoned:
                finish = "abandoned"
                break
            if not job.ignore_eos and self._llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                finish = "stop"
                break
            tokens.append(token)
            # The whole output decoded each time: a character split across tokens appears once complete.
            text = llm.detokenize(tokens).decode("utf-8", "ignore")
            hits = [text.find(s) for s in job.stop if s and s in text]
            if hits:
                text, finish = text[: min(hits)], "stop"
                break
            if len(tokens) >= job.max_new_tokens:
                break
            if job.pieces is not None and len(text) - held > sent:
                job.loop.call_soon_threadsafe(_put, job.pieces, text[sent : len(text) - held])
                sent = len(text) - held
        sampled.close()
        if job.pieces is not None and len(text) > sent:
            job.loop.call_soon_threadsafe(_put, job.pieces, text[sent:])
        result = GenerationResult(text, len(job.ids), len(tokens), finish)
        job.loop.call_soon_threadsafe(_settle, job.future, result)


class LlamaCppBackend(TransformersBackend):
    """A GGUF model generating in a llama.cpp thread, one request at a time.

    Args:
        path: The `.gguf` file, or a folder holding one.
        threads: llama.cpp threads (default: llama.cpp's choice).
        context: Context length in tokens (default: the model's training context).
        max_output_tokens: Most tokens generated for one request, whatever it asks.
        default_max_tokens: Output budget of a completion request that names none.

    Examples:
        >>> backend = LlamaCppBackend("model.q8_0.gguf", threads=2)  # doctest: +SKIP
    """

    runtime = "llama.cpp"

    def __init__(  # the parent's __init__ loads a transformers model; this one loads the GGUF file instead
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        context: int | None = None,
        max_output_tokens: int = 4096,
        default_max_tokens: int = 16,
    ) -> None:
        llama_cpp = _import_llama_cpp()
        file = Path(path)
        if file.is_dir():
            found = sorted(file.glob("*.gguf"))
            if not found:
                raise FileNotFoundError(f"expected a .gguf file in {file}; found none")
            file = found[0]
        llm = llama_cpp.Llama(
            model_path=str(file), n_ctx=context or 0, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        self.tokenizer = _GgufTokenizer(llm)  # type: ignore[assignment]
        self.context = int(llm.n_ctx())
        # A token covers at most this many characters (as the parent computes from its vocabulary).
        self.longest_token = max((len(llm.detokenize([t])) for t in range(llm.n_vocab())), default=1) or 1
        self.max_output_tokens = max_output_tokens
        self.default_max_tokens = default_max_tokens
        self.engine = _LlamaEngine(llm, llama_cpp)  # type: ignore[assignment]
