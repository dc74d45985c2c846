"""Dataset classification and the per-version data keys that encrypt restricted datasets at rest.

A dataset classified `restricted` has every version committed after that sealed: each commit makes a
fresh AES-256 data key, wraps it with the workspace's current key-encryption key (kept outside the
database, `keel.core.keyring`), stores only the wrapped key, and writes its shards, key files,
deletion vectors and manifest as AES-GCM ciphertext. `rotate_keys` re-wraps every data key under a
new key-encryption key without touching a blob. Versions committed before the classification stay
as they were (they are counted, so the caller can say so).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, func, select, update

from keel.core.echo import shown
from keel.core.errors import ConfigError, InputError
from keel.core.ids import new_ulid
from keel.govern._access import policy_changed, require
from keel.registry._refs import check_name
from keel.store import Store, insert_for
from keel.store._blobs import SealingBlobStore
from keel.store.schema import data_keys, dataset_classifications, dataset_versions

__all__ = [
    "CLASSIFICATIONS",
    "Classification",
    "KeyRotation",
    "classify_dataset",
    "get_classification",
    "rotate_keys",
    "sealing_store",
]

Classification = Literal["public", "internal", "confidential", "restricted"]
CLASSIFICATIONS: tuple[Classification, ...] = ("public", "internal", "confidential", "restricted")


def get_classification(conn: Connection, name: str) -> str | None:
    """A dataset's classification, or None when it was never classified."""
    value = conn.scalar(select(dataset_classifications.c.classification).where(dataset_classifications.c.name == name))
    return str(value) if value is not None else None


def classify_dataset(store: Store, name: str, classification: str) -> dict[str, Any]:
    """Classify dataset `name` (before or after its first version); audited.

    Returns:
        The name, the classification, the one before, and how many existing versions were committed
        unencrypted (a restricted classification seals the versions committed from now on).

    Raises:
        InputError: An unknown classification.
    """
    check_name(name, "dataset")
    if classification not in CLASSIFICATIONS:
        raise InputError(f"expected a classification among {', '.join(CLASSIFICATIONS)}; got {shown(classification)}")
    require(store, "dataset.classify", f"dataset:{name}")
    at = store.clock()
    with store.db.write() as conn:
        before = get_classification(conn, name)
        row = {"name": name, "classification": classification, "updated_by": store.actor, "updated_at": at}
        conn.execute(
            insert_for(conn, dataset_classifications)
            .values(**row)
            .on_conflict_do_update(index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"})
        )
        existing = int(conn.scalar(select(func.count()).where(dataset_versions.c.name == name)) or 0)
        store.audit(conn, "dataset.classify", f"dataset:{name}", {"classification": classification, "before": before})
    policy_changed(store)  # a restricted dataset's reads are checked from now on
    return {"name": name, "classification": classification, "before": before, "existing_versions": existing}


def _new_data_key(store: Store, conn: Connection, name: str) -> tuple[str, bytes]:
    from keel.core.keyring import load_keyring  # here: cryptography is 0.01 CPU-s a commit of an open dataset skips

    keyring = load_keyring(store.settings)
    key = os.urandom(32)
    key_id = new_ulid()
    kek_id, wrapped = keyring.wrap(key)
    conn.execute(
        data_keys.insert().values(id=key_id, dataset=name, kek_id=kek_id, wrapped=wrapped, created_at=store.clock())
    )
    return key_id, key


def sealing_store(store: Store, name: str, conn: Connection | None = None) -> Store:
    """The store to write a version of `name` with: one whose blob writes are sealed when `name` is restricted.

    Each call for a restricted dataset makes a new data key (one per version); `conn`, when given, is
    the write transaction to record it in (else its own).
    """
    if conn is not None:
        restricted = get_classification(conn, name) == "restricted"
        if not restricted:
            return store
        key_id, key = _new_data_key(store, conn, name)
    else:
        with store.db.write() as own:
            if get_classification(own, name) != "restricted":
                return store
            key_id, key = _new_data_key(store, own, name)
    unsealer = getattr(store.blobs, "unsealer", None)
    if unsealer is not None and hasattr(unsealer, "remember"):
        unsealer.remember(key_id, key)  # read back before its transaction commits (erasure, a commit's checks)
    return dataclasses.replace(store, blobs=SealingBlobStore(store.blobs, key_id, key))


@dataclass(frozen=True)
class KeyRotation:
    """What `rotate_keys` did."""

    new_kek: str
    retired: list[str]
    data_keys: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"new_kek": self.new_kek, "retired": self.retired, "data_keys": self.data_keys}


def rotate_keys(store: Store) -> KeyRotation:
    """Re-wrap every data key under a new key-encryption key, then retire the old ones; audited.

    The key file first gains the new key beside the old ones, then the database's data keys are
    re-wrapped in one transaction, then the old keys leave the file: a crash at any point leaves a
    key file that opens every data key.

    Raises:
        ConfigError: The keyring comes from `KEEL_GOVERN_KEY` (rotate the file it was made from instead).
    """
    settings = store.settings
    if settings.govern_key:
        raise ConfigError(
            "expected the governance keyring in a key file to rotate it; it comes from KEEL_GOVERN_KEY",
            hint="unset KEEL_GOVERN_KEY, rotate the key file (govern_key_file), then set the variable from it",
        )
    from keel.core.keyring import Keyring, load_keyring, new_kek, save_keyring

    ring = load_keyring(settings, create=False)
    path = settings.resolved_govern_key_file
    fresh = new_kek()
    both = Keyring(ring.subject_secret, ring.signing_seed, ring.source, (fresh, *ring.keks))
    save_keyring(both, path)
    count = 0
    with store.db.write() as conn:
        for row in conn.execute(select(data_keys.c.id, data_keys.c.kek_id, data_keys.c.wrapped)).all():
            kek_id, wrapped = both.wrap(both.unwrap(row.kek_id, row.wrapped))
            conn.execute(update(data_keys).where(data_keys.c.id == row.id).values(kek_id=kek_id, wrapped=wrapped))
            count += 1
        retired = [kek_id for kek_id, _ in ring.keks]
        store.audit(
            conn, "govern.rotate_key", "workspace:keys", {"new_kek": fresh[0], "retired": retired, "data_keys": count}
        )
    save_keyring(Keyring(ring.subject_secret, ring.signing_seed, ring.source, (fresh,)), path)
    forget = getattr(store.blobs, "unsealer", None)
    if forget is not None and hasattr(forget, "forget"):
        forget.forget()
    return KeyRotation(fresh[0], retired, count)
