"""Weak supervision: labelling functions in Python and YAML (keywords, regex, a model behind a stub OpenAI server on
127.0.0.1), the label matrix and its statistics, and the Dawid–Skene label model against majority vote on the
ticket-intent task built from the demo corpus, over a labelled holdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keel.core.errors import InputError
from keel.data import commit_version, get_version, load_version
from keel.label.weak import (
    ABSTAIN,
    DawidSkene,
    LabelMatrix,
    apply_lfs,
    combine,
    keyword_lf,
    labeling_function,
    lf_summary,
    load_lfs,
    majority_vote,
    regex_lf,
    weak_label_version,
)
from keel.pipeline._ticket_intents import ticket_intents
from keel.serve import serve_in_thread, stub_upstream_app
from keel.store import Store, open_store, walk

HERE = Path(__file__).parent
TICKET_LFS = HERE / "ticket_lfs.yaml"


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[str, object]]:
    """The stub OpenAI-compatible server: it answers `"<model>: <prompt>"`."""
    upstream = stub_upstream_app()
    with serve_in_thread(upstream) as url:
        yield url, upstream


def test_python_keyword_and_regex_functions_vote_or_abstain() -> None:
    @labeling_function()
    def says_refund(text: str) -> str | None:
        return "refund" if "refund" in text.lower() else ABSTAIN

    @labeling_function("by_row", field=None)
    def whole_row(row: dict[str, object]) -> str | None:
        return "shipping" if row.get("channel") == "chat" else None

    rows = [{"text": "Refund me please", "channel": "chat"}, {"text": "Order 71234 is late", "channel": "mail"}]
    assert says_refund.name == "says_refund" and says_refund.apply(rows) == ["refund", None]
    assert whole_row.apply(rows) == ["shipping", None]
    assert keyword_lf("kw", ["is late"], "order_status").apply(rows) == [None, "order_status"]
    assert keyword_lf("kw", ["fund"], "refund").apply(rows) == [None, None]  # whole words only
    assert regex_lf("re", r"order \d{5}", "order_status").apply(rows) == [None, "order_status"]
    with pytest.raises(InputError, match="valid regular expression"):
        regex_lf("bad", "(", "x")


def test_matrix_statistics_match_a_hand_count() -> None:
    # 4 rows, 3 functions. a: votes x,x,-,- ; b: votes x,y,y,- ; c: abstains everywhere but row 3 (y).
    votes = np.array([[0, 0, -1], [0, 1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.int16)
    matrix = LabelMatrix(votes, ["x", "y"], ["a", "b", "c"])
    a, b, c = lf_summary(matrix, ["x", "y", "x", None])
    assert (a.coverage, a.overlap, a.conflict, a.polarity) == (0.5, 0.5, 0.25, ["x"])
    assert (b.coverage, b.overlap, b.conflict, b.polarity) == (0.75, 0.5, 0.25, ["x", "y"])
    assert (c.coverage, c.overlap, c.conflict) == (0.25, 0.0, 0.0)
    assert (a.accuracy, a.gold_votes) == (0.5, 2)
    assert (b.accuracy, b.gold_votes) == (pytest.approx(2 / 3), 3)
    assert (c.accuracy, c.gold_votes) == (None, 0)  # its one vote is on a row without gold
    assert matrix.to_sparse().nnz == 6


def test_ties_and_abstentions_are_deterministic() -> None:
    votes = np.array([[0, 1], [1, 0], [-1, -1], [1, 1]], dtype=np.int16)
    shares, hard = majority_vote(votes, 2)
    assert hard.tolist() == [0, 0, -1, 1]  # a tie goes to the class listed first; no vote: -1
    assert shares[2].tolist() == [0.5, 0.5]
    matrix = LabelMatrix(votes, ["first", "second"], ["a", "b"])
    once, again = combine(matrix), combine(matrix)
    assert once.labels == again.labels and np.array_equal(once.probs, again.probs)
    assert once.labels[2] is None and once.voters[2] == [] and once.voters[0] == ["a", "b"]
    assert np.allclose(once.probs.sum(axis=1), 1.0)


def test_the_label_model_learns_which_function_to_trust_where_the_majority_cannot() -> None:
    # Five independent functions on two classes: four are right 60% of the time, one 95%.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 3000)
    columns = [np.where(rng.random(3000) < p, truth, 1 - truth) for p in (0.6, 0.6, 0.6, 0.6, 0.95)]
    votes = np.stack(columns, axis=1).astype(np.int16)
    model = DawidSkene(2).fit(votes)
    mv_accuracy = (majority_vote(votes, 2)[1] == truth).mean()
    ds_accuracy = (model.predict(votes) == truth).mean()
    assert mv_accuracy < 0.85  # the four weak functions often outvote the good one
    assert ds_accuracy > 0.93 and ds_accuracy > mv_accuracy + 0.08
    assert model.confusion is not None and model.confusion[4, 0, 0] > 0.9 > 0.7 > model.confusion[0, 0, 0]


def test_yaml_problems_are_listed_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "lfs.yaml"
    bad.write_text(
        "lfs:\n  - {name: a, keywords: [x]}\n  - {name: b, regex: 'y', keywords: [z], label: c}\n  - {nme: c}\n"
    )
    with pytest.raises(InputError) as caught:
        load_lfs(bad)
    message = str(caught.value)
    assert "4 problem(s)" in message and "lfs.0" in message and "lfs.1" in message and "lfs.2" in message
    with pytest.raises(InputError, match="does not exist"):
        load_lfs(tmp_path / "missing.yaml")
    (tmp_path / "lfs.txt").write_text("x")
    with pytest.raises(InputError, match=r"\.py or \.yaml"):
        load_lfs(tmp_path / "lfs.txt")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"lfs:\n  - {name: r, keywords: [caf\xe9], label: refund}\n", "UTF-8"),  # a UnicodeDecodeError traceback
        (b"lfs:\n  - {name: r, keywords: [x], label: a}\nlfs:\n  - {name: s, keywords: [y], label: b}\n", "once"),
        (b"lfs: [unclosed\n", "line 2"),
        (b"- a\n- b\n", "found a list"),
    ],
    ids=["not-utf8", "repeated-key", "syntax-error", "a-list"],
)
def test_a_malformed_yaml_file_is_one_input_error_naming_it(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "lfs.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_lfs(path)
    assert str(path) in str(caught.value) and expected in str(caught.value), str(caught.value)


def test_a_yaml_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "lfs.yaml"
    path.write_bytes(b"\xef\xbb\xbflfs:\n  - {name: r, keywords: [refund], label: refund}\n")
    assert [lf.name for lf in load_lfs(path).lfs] == ["r"]


def test_a_python_file_of_functions_loads_in_order_with_its_classes(tmp_path: Path) -> None:
    path = tmp_path / "my_lfs.py"
    path.write_text(
        "from keel.label.weak import ABSTAIN, labeling_function\n"
        "CLASSES = ['refund', 'shipping']\n"
        "@labeling_function()\ndef refund(text):\n    return 'refund' if 'refund' in text else ABSTAIN\n"
        "@labeling_function()\ndef ship(text):\n    return 'shipping' if 'ship' in text else ABSTAIN\n"
    )
    loaded = load_lfs(path)
    assert [lf.name for lf in loaded.lfs] == ["refund", "ship"] and loaded.classes == ["refund", "shipping"]
    assert len(loaded.digest) == 64
    matrix = apply_lfs(loaded.lfs, [{"text": "refund"}, {"text": "ship it"}, {"text": "hi"}], loaded.classes)
    assert matrix.votes.tolist() == [[0, -1], [-1, 1], [-1, -1]]
    with pytest.raises(InputError, match="not among the classes"):
        apply_lfs(loaded.lfs, [{"text": "ship"}], ["refund"])
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(InputError, match="found none"):
        load_lfs(tmp_path / "empty.py")


def test_a_model_function_asks_the_endpoint_concurrently_and_caches_answers(
    tmp_path: Path, stub: tuple[str, object]
) -> None:
    url, upstream = stub
    path = tmp_path / "lfs.yaml"
    path.write_text(
        "classes: [refund, shipping]\n"
        f"model: {{base_url: '{url}/v1', model: stub, concurrency: 4}}\n"
        "lfs:\n  - {name: ask, prompt: 'Classify as {classes}: {text}'}\n"
        "  - {name: yes_refund, prompt: '{text}', label: refund}\n"
    )
    rows = [{"text": "I want a refund"}, {"text": "what about shipping"}, {"text": "hello"}]
    loaded = load_lfs(path, cache_dir=tmp_path / "cache")
    before = upstream.state.requests  # type: ignore[attr-defined]
    matrix = apply_lfs(loaded.lfs, rows, loaded.classes)
    sent = upstream.state.requests - before  # type: ignore[attr-defined]
    # The stub echoes "stub: <prompt>": the class list is in every prompt, so the first class named wins …
    assert matrix.votes[:, 0].tolist() == [0, 0, 0]
    # … and "stub: …" never starts with "yes", so the yes/no function abstains.
    assert matrix.votes[:, 1].tolist() == [-1, -1, -1]
    assert sent == 6
    again = apply_lfs(load_lfs(path, cache_dir=tmp_path / "cache").lfs, rows, loaded.classes)
    assert np.array_equal(again.votes, matrix.votes)
    assert upstream.state.requests - before == 6  # every answer came from the cache  # type: ignore[attr-defined]
    path.write_text(path.read_text().replace(f"{url}/v1", f"{url}/fail/v1"))
    with pytest.raises(InputError, match="requests to .* failed"):
        apply_lfs(load_lfs(path, cache_dir=tmp_path / "other").lfs, rows, loaded.classes)


def test_a_model_function_maps_answers_to_classes() -> None:
    from keel.label.weak import ModelLF, ModelSettings

    lf = ModelLF("m", "{text}", ["refund", "order_status"], ModelSettings(base_url="http://127.0.0.1:1/v1", model="m"))
    assert lf._answer_to_class("Order_status.") == "order_status"
    assert lf._answer_to_class("It is a refund request") == "refund"
    assert lf._answer_to_class("no idea") is None and lf._answer_to_class("") is None
    yes = ModelLF("y", "{text}", ["refund"], lf.settings, label="refund")
    assert yes._answer_to_class("Yes, it is.") == "refund" and yes._answer_to_class("No") is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_label_model_beats_majority_vote_on_the_ticket_task(seed: int) -> None:
    examples = ticket_intents(1500, seed=seed)
    loaded = load_lfs(TICKET_LFS)
    matrix = apply_lfs(loaded.lfs, [{"text": e.text} for e in examples], loaded.classes)
    weak = combine(matrix)
    scores = weak.accuracy([e.intent for e in examples])
    assert scores["label_model"] >= scores["majority_vote"] + 0.03, scores
    assert scores["covered"] >= 0.99 * len(examples)


def test_modelling_abstention_is_what_makes_one_class_keyword_rules_informative() -> None:
    examples = ticket_intents(1000, seed=7)
    loaded = load_lfs(TICKET_LFS)
    matrix = apply_lfs(loaded.lfs, [{"text": e.text} for e in examples], loaded.classes)
    gold = [e.intent for e in examples]
    ignoring = combine(matrix, model=DawidSkene(6, model_abstain=False).fit(matrix.votes)).accuracy(gold)
    modelling = combine(matrix).accuracy(gold)
    # Every rule votes one class: without abstentions its votes carry no information, and the priors decide.
    assert ignoring["label_model"] < 0.5 < ignoring["majority_vote"] < modelling["label_model"]


def _commit_tickets(store: Store, n: int, seed: int, name: str = "tickets") -> str:
    examples = ticket_intents(n, seed=seed)
    table = pa.table({"id": [e.id for e in examples], "text": [e.text for e in examples],
                      "intent": [e.intent for e in examples]})  # fmt: skip
    version, _ = commit_version(store, name, table, message="tickets with gold intents")
    return version.ref


def test_a_run_over_a_labelled_holdout_reports_accuracy_and_commits_rows_naming_their_functions(
    workspace: Path,
) -> None:
    store = open_store_at(workspace)
    try:
        ref = _commit_tickets(store, 600, seed=5)
        run = weak_label_version(store, ref, load_lfs(TICKET_LFS), gold="intent", to="tickets-weak")
        assert run.gold["gold_rows"] == 600
        assert run.gold["label_model"] >= run.gold["majority_vote"]
        assert run.version == "tickets-weak@v1" and run.new
        table = load_version(store, run.version).to_pylist()
        labelled = [r for r in table if r["weak_label"] is not None]
        assert len(labelled) == run.covered
        row = labelled[0]
        assert row["weak_lfs"] and set(row["weak_lfs"]) == set(json.loads(row["weak_votes"]))
        assert 0 < row["weak_prob"] <= 1 and abs(sum(json.loads(row["weak_probs"]).values()) - 1) < 1e-4
        accuracy = sum(r["weak_label"] == r["intent"] for r in table) / len(table)
        assert accuracy == pytest.approx(run.gold["label_model"])
        version = get_version(store, run.version)
        with store.db.read() as conn:
            assert [h.node for h in walk(conn, version.node, "upstream", depth=1)] == [f"dataset-version:{ref}"]
        assert version.manifest["producer"]["label_model"] == "dawid-skene"
        again = weak_label_version(store, ref, load_lfs(TICKET_LFS), gold="intent", to="tickets-weak")
        assert again.version == run.version and not again.new  # same rows: no new version
        with pytest.raises(InputError, match="gold-label column"):
            weak_label_version(store, ref, load_lfs(TICKET_LFS), gold="nope")
    finally:
        store.close()


def open_store_at(workspace: Path) -> Store:
    from keel.core.settings import load_settings

    return open_store(load_settings(workspace))
