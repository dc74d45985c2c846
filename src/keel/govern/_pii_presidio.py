"""Names and places found by Microsoft Presidio over a spaCy model the user installed: the `presidio` PII engine.

Optional and never downloaded: `presidio_model()` looks for `presidio-analyzer` and an installed English spaCy
pipeline (any package spaCy registers, e.g. `en_core_web_sm`); `PresidioFinder` refuses to start without them
(Presidio's own default would try to download `en_core_web_lg`). Only Presidio's NER entities are asked for
(PERSON, LOCATION): its pattern recognizers repeat Keel's validated ones, and its URL and e-mail checks fetch the
public-suffix list from the network. Returns `(type, start, end)` triples like `_pii_people`.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

from keel.core.errors import ConfigError

__all__ = ["PRESIDIO_TYPES", "PresidioFinder", "presidio_model"]

# Keel type of each Presidio entity asked for. LOCATION is spaCy's GPE/LOC/FAC (cities and countries as well
# as streets): the closest Presidio has to a street address.
_ENTITIES = {"PERSON": "person", "LOCATION": "address"}
PRESIDIO_TYPES: tuple[str, ...] = ("person", "address")
# Preferred when several are installed: larger English pipelines tag names better.
_PREFERRED = ("en_core_web_trf", "en_core_web_lg", "en_core_web_md", "en_core_web_sm")
_HOW = (
    "pip install presidio-analyzer and an English spaCy pipeline package (such as en_core_web_sm) on this "
    "machine; Keel never downloads one. Or use engine 'keel'"
)


def presidio_model() -> str | None:
    """The spaCy pipeline the `presidio` engine would use, or None when Presidio or an English pipeline is missing.

    Imports spaCy (seconds) only when `presidio_analyzer` is installed.
    """
    if importlib.util.find_spec("presidio_analyzer") is None or importlib.util.find_spec("spacy") is None:
        return None
    import spacy.util

    installed = sorted(spacy.util.get_installed_models())
    for name in _PREFERRED:
        if name in installed:
            return name
    # Re-uploads keep the family name (en_core_web_sm_<suffix>); then any pipeline named for English.
    for prefix in ("en_core_web", "en_"):
        for name in installed:
            if name.startswith(prefix):
                return name
    return None


@cache
def _analyzer(model: str) -> Any:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


class PresidioFinder:
    """Names (`person`) and places (`address`) from Presidio's spaCy NER.

    Args:
        types: The Keel types wanted, among `PRESIDIO_TYPES`.
        model: An installed spaCy pipeline; None picks one (`presidio_model`).
        score_threshold: Presidio's confidence from which a finding counts (its NER findings score 0.85).

    Raises:
        ConfigError: Presidio or an English spaCy pipeline is not installed, or `model` is not installed.
    """

    def __init__(
        self, types: tuple[str, ...] = PRESIDIO_TYPES, *, model: str | None = None, score_threshold: float = 0.5
    ) -> None:
        found = presidio_model()
        if found is None:
            missing = "presidio-analyzer" if importlib.util.find_spec("presidio_analyzer") is None else "a spaCy model"
            raise ConfigError(
                f"expected presidio-analyzer and an English spaCy pipeline for PII engine 'presidio'; {missing} is "
                "not installed",
                hint=_HOW,
            )
        if model is not None:
            import spacy.util

            if model not in spacy.util.get_installed_models():
                raise ConfigError(f"expected an installed spaCy pipeline; {model!r} is not installed", hint=_HOW)
        self.model = model or found
        self._entities = [entity for entity, kind in _ENTITIES.items() if kind in types]
        self._threshold = score_threshold

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """`(type, start, end)` for each name or place Presidio finds in `text`."""
        if not self._entities or not text.strip():
            return []
        results = _analyzer(self.model).analyze(
            text, language="en", entities=self._entities, score_threshold=self._threshold
        )
        return sorted((_ENTITIES[r.entity_type], int(r.start), int(r.end)) for r in results)
