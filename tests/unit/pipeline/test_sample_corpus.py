from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pyarrow.parquet as pq

from keel.curate import LocalEngine, load_recipe
from keel.pipeline._sample_corpus import PRODUCTS, sft_pairs, write_sample_corpus


def test_sft_pairs_are_read_out_of_the_curated_product_pages(tmp_path: Path) -> None:
    corpus = write_sample_corpus(tmp_path / "corpus")
    recipe = tmp_path / "pipeline" / "recipe.yaml"  # the demo pipeline's recipe reads ../corpus
    recipe.parent.mkdir()
    recipe.write_bytes(files("keel.pipeline").joinpath("demo", "recipe.yaml").read_bytes())
    report = LocalEngine().run(load_recipe(recipe))
    table = pq.read_table(sorted((corpus.root / "curated" / "data").glob("*.parquet")))
    records = list(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    pairs = sft_pairs(records)

    # two questions per fact, five facts, one page per product (the mirrored page was deduplicated)
    assert report.records_out == len(records) and len(pairs) == len(PRODUCTS) * 10
    assert len({p["id"] for p in pairs}) == len(pairs)
    kayak = next(p for p in pairs if p["id"] == "sft-harbor-folding-kayak-warranty-0")
    assert kayak["messages"] == [
        {"role": "user", "content": "How long is the warranty on the Harbor Folding Kayak?"},
        {"role": "assistant", "content": "The Harbor Folding Kayak comes with a 6-year warranty."},
    ]
    page = dict(records)[kayak["kb_record"]]
    assert page.startswith("Harbor Folding Kayak") and "6-year warranty" in page
    # policies and tickets give no pairs; a page missing a fact gives none either
    assert not sft_pairs([("x", "Refund policy\nRefunds take 5 days.")])
    assert not sft_pairs([("y", kayak_text_without_price(page))])


def kayak_text_without_price(page: str) -> str:
    return page.replace("It costs 1199 dollars and", "It")


def test_eval_contexts_are_the_pages_text_not_their_html(tmp_path: Path) -> None:
    corpus = write_sample_corpus(tmp_path)
    cases = [json.loads(line) for line in corpus.eval_path.read_text().splitlines()]
    assert cases and all("<" not in c for case in cases for c in case["contexts"])
    kayak = next(case for case in cases if "Kayak" in case["input"])
    assert "Harbor Folding Kayak" in kayak["contexts"][0] and "warranty" in kayak["contexts"][0]
