"""Erasure records: the signed certificate of each data-subject erasure, and the marks it leaves.

A certificate is canonical JSON listing what was found and what was done, by hash (subject keys,
digests of record and trace ids, blob digests), never a personal value; the workspace's Ed25519
key signs it, the `erasures` table and the audit log keep it. Marks say which objects an erasure
removed (`erased`, with what replaced them) or tainted (`trained_on_erased_data`,
`serves_erased_data`), for `keel model show`, model cards and `keel deploy list`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from keel.core.ids import canonical_json
from keel.core.keyring import Keyring, verify_signature
from keel.registry._marks import Mark
from keel.store import Store, insert_for
from keel.store.schema import erasure_marks, erasures

__all__ = [
    "CERTIFICATE_FORMAT",
    "Certificate",
    "get_certificate",
    "record_erasure",
    "sha256_text",
    "verify_certificate",
]

CERTIFICATE_FORMAT = "keel.erasure-certificate/1"


def sha256_text(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes, hex: how certificates name record and trace ids."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Certificate:
    """A signed erasure certificate: the document, its sha256 and the Ed25519 signature."""

    document: dict[str, Any]
    sha256: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        """The certificate as `keel govern erase --json` prints it."""
        return {"certificate": self.document, "sha256": self.sha256, "signature": self.signature}


def record_erasure(
    store: Store, conn: Connection, keyring: Keyring, document: dict[str, Any], marks: Sequence[Mark]
) -> Certificate:
    """Sign the certificate, store it and its marks, and audit it, in the caller's write transaction."""
    document = {"format": CERTIFICATE_FORMAT, **document, "public_key": keyring.public_key}
    text = canonical_json(document)
    digest = sha256_text(text)
    signature = keyring.sign(text.encode("utf-8"))
    erasure_id = document["id"]
    conn.execute(
        erasures.insert().values(
            id=erasure_id,
            at=store.clock(),
            actor=store.actor,
            certificate=text,
            certificate_sha256=digest,
            signature=signature,
        )
    )
    if marks:
        conn.execute(
            insert_for(conn, erasure_marks)
            .values(
                [
                    {"node": m.node, "erasure_id": erasure_id, "mark": m.mark, "replaced_by": m.replaced_by}
                    for m in marks
                ]
            )
            .on_conflict_do_nothing()
        )
    store.audit(
        conn,
        "govern.erase",
        f"erasure:{erasure_id}",
        {
            "certificate_sha256": digest,
            "signature": signature,
            "public_key": keyring.public_key,
            "subjects": document.get("subjects", []),
            "found": document.get("found", {}),
        },
    )
    return Certificate(document, digest, signature)


def get_certificate(conn: Connection, erasure_id: str) -> Certificate | None:
    """A stored certificate by erasure id."""
    row = conn.execute(select(erasures).where(erasures.c.id == erasure_id)).first()
    if row is None:
        return None
    return Certificate(json.loads(row.certificate), row.certificate_sha256, row.signature)


def verify_certificate(certificate: Certificate) -> bool:
    """Whether the certificate's signature holds under the public key it names, and its sha256 matches."""
    text = canonical_json(certificate.document)
    if sha256_text(text) != certificate.sha256:
        return False
    return verify_signature(
        str(certificate.document.get("public_key", "")), text.encode("utf-8"), certificate.signature
    )
