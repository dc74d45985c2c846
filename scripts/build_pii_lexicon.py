"""Build the lexicon behind Keel's offline name and address detection (src/keel/govern/_data/).

Sources, all installed locally (nothing is downloaded at run time):
- given names and surnames of 38 locales from Faker's person providers (MIT licence), Latin script only
  (romanised names where a locale ships them);
- one-word places (countries, states, cities, capitals) and language names from Faker's address, date-time and
  person providers;
- common English words: the lowercase entries of Debian's `wamerican-small` and `wbritish-small` word lists
  (SCOWL, public-domain-style licence), so a capitalised "Will" or "Grant" at a sentence start is not taken
  for a name without other evidence.

    apt-get install -y wamerican-small wbritish-small && python scripts/build_pii_lexicon.py

The output is deterministic (sorted), so a rebuild from the same sources is byte-identical.
"""

from __future__ import annotations

import gzip
import importlib
import json
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "keel" / "govern" / "_data" / "people_lexicon.json.gz"
LOCALES = [
    "en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "en_KE", "en_NG", "de_DE", "de_AT", "de_LI", "fr_FR", "fr_CA",
    "es_ES", "es_MX", "it_IT", "nl_NL", "pt_BR", "pt_PT", "pl_PL", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ",
    "tr_TR", "yo_NG", "ig_NG", "ha_NG", "tw_GH", "zu_ZA", "vi_VN", "id_ID", "sw", "en_TH", "zh_CN", "zh_TW", "ja_JP",
]  # fmt: skip
WORD_LISTS = [Path("/usr/share/dict/american-english-small"), Path("/usr/share/dict/british-english-small")]


def _latin(name: str) -> bool:
    return all(ch in " '-" or (ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN")) for ch in name)


def _names(provider: type, *attributes: str) -> set[str]:
    found: set[str] = set()
    for attribute in attributes:
        for value in getattr(provider, attribute, None) or ():
            name = str(value[-1] if isinstance(value, tuple) else value)  # ja_JP pairs: (kanji, kana, romaji)
            if _latin(name):
                found.add(name.title() if name.isupper() else name)
    return found


def _fold(word: str) -> str:
    return unicodedata.normalize("NFC", word).casefold()


def main() -> None:
    first: set[str] = set()
    last: set[str] = set()
    for locale in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        first |= _names(
            provider, "first_names", "first_names_male", "first_names_female", "first_romanized_names",
            "first_name_pairs",
        )  # fmt: skip
        last |= _names(provider, "last_names", "last_names_male", "last_names_female", "last_romanized_names",
                       "last_name_pairs")  # fmt: skip
    places: set[str] = set()
    for locale in ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pt_PT", "pl_PL", "en_IN",
                   "sv_SE", "es_MX", "en_AU", "ja_JP"]:  # fmt: skip
        provider = importlib.import_module(f"faker.providers.address.{locale}").Provider
        for attribute in ("countries", "states", "cities"):
            values = getattr(provider, attribute, None) or ()
            places.update(str(v) for v in (values.values() if isinstance(values, dict) else values))
    # Capitals and the cities time zones are named after (Paris, Chicago) from Faker's date-time provider.
    for country in importlib.import_module("faker.providers.date_time").Provider.countries:
        cities = [tz.split("/")[-1].replace("_", " ") for tz in country.timezones]
        places.update([country.name, country.capital, *cities])
    # Language names (English, German, Tamil): capitalised words that are surnames or given names in Faker too.
    languages: set[str] = set()
    for locale in ["en", "en_US"]:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        languages.update(str(v) for v in getattr(provider, "language_names", ()) or ())
    common: set[str] = set()
    for path in WORD_LISTS:
        for line in path.read_text(encoding="utf-8").splitlines():
            word = line.strip()
            if word and word.islower() and "'" not in word:
                common.add(word)
    lexicon = {
        "first": sorted({_fold(n) for n in first if n.isalpha() or "-" in n}),
        "last": sorted({_fold(n) for n in last if n.replace("-", "").replace("'", "").replace(" ", "").isalpha()}),
        "common": sorted(common),
        # Multi-word place names (countries, states, cities): a capitalised run equal to one is not a person.
        "places": sorted({_fold(p) for p in places if " " in p.strip() and _latin(p)}),
        # One-word places and language names: a lone capitalised one is not a person unless it is a given name.
        "place_words": sorted({_fold(p) for p in places if " " not in p.strip() and _latin(p) and p.strip().isalpha()}),
        "languages": sorted({_fold(n) for n in languages if n.isalpha() and _latin(n)}),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(lexicon, ensure_ascii=False, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(data, mtime=0))
    print(json.dumps({k: len(v) for k, v in lexicon.items()} | {"bytes": OUT.stat().st_size}))


if __name__ == "__main__":
    main()
