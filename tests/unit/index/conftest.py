"""A small knowledge base of real sentences, committed as dataset versions for the index tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from keel.data import commit_version, make_record, records_to_table
from keel.store import Store

FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# (record id, language, topic, text): one document per topic, a few with two paragraphs.
DOCS = [
    (
        "refunds",
        "en",
        "billing",
        "Refunds are issued to the original payment method within 14 days of the purchase date.\n\n"
        "To request a refund, write to billing support and include your order number.",
    ),
    (
        "invoices",
        "en",
        "billing",
        "Invoices are generated on the first day of every month and sent to the account owner by email. "
        "Past invoices can be downloaded as PDF files from the billing page.",
    ),
    (
        "shipping",
        "en",
        "delivery",
        "We ship to more than forty countries. Standard shipping takes five to seven business days.\n\n"
        "Express delivery arrives within two business days for an extra fee.",
    ),
    (
        "password",
        "en",
        "account",
        "To reset a forgotten password, open the login page and choose 'Forgot password'. "
        "A reset link valid for one hour is emailed to you.",
    ),
    (
        "two-factor",
        "en",
        "account",
        "Two-factor authentication adds a one-time code from an authenticator app to every sign-in. "
        "Enable it under Security settings.",
    ),
    (
        "api-limits",
        "en",
        "developers",
        "The public API allows 600 requests per minute per key. Requests above the limit receive "
        "HTTP status 429 and should be retried after the delay in the Retry-After header.",
    ),
    (
        "webhooks",
        "en",
        "developers",
        "Webhooks deliver events such as order.created to your HTTPS endpoint. Each delivery is signed "
        "with an HMAC so you can verify that it came from us.",
    ),
    (
        "versand",
        "de",
        "delivery",
        "Wir liefern in mehr als vierzig Länder. Der Standardversand dauert fünf bis sieben Werktage.",
    ),
]


def corpus(
    overrides: dict[str, str] | None = None, drop: tuple[str, ...] = (), add: tuple[tuple[str, str, str, str], ...] = ()
) -> pa.Table:
    """The knowledge base as records, with some texts replaced, some records dropped or added."""
    rows = []
    for rid, lang, topic, text in [*DOCS, *add]:
        if rid in drop:
            continue
        text = (overrides or {}).get(rid, text)
        record = make_record(text, f"file:///kb/{rid}.md", 0, text.encode(), FETCHED, {"topic": topic},
                             record_id_override=rid)  # fmt: skip
        record["lang"] = lang
        rows.append(record)
    table = records_to_table([{k: v for k, v in r.items() if k != "lang"} for r in rows])
    return table.append_column("lang", pa.array([r["lang"] for r in rows], pa.string()))


def commit(store: Store, name: str, table: pa.Table) -> Any:
    """Commit `table` as the next version of dataset `name`."""
    version, _ = commit_version(store, name, table)
    return version


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Embedding runs on one thread: the machine's cores are shared with other test processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_corpus() -> Callable[..., pa.Table]:
    """`corpus(overrides=None, drop=(), add=())`: the knowledge base as a table of records."""
    return corpus


@pytest.fixture
def commit_dataset() -> Callable[[Store, str, pa.Table], Any]:
    """`commit(store, name, table)`: commit a table as the next dataset version."""
    return commit


@pytest.fixture
def kb(store: Store) -> Any:
    """Dataset version `kb@v1` of the knowledge base."""
    return commit(store, "kb", corpus())
