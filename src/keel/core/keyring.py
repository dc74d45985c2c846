"""The workspace's governance keys, kept outside the database, and the keyed hashes of data subjects.

A keyring holds the HMAC key that turns a personal value (`email:jane@example.com`) into the
64-hex-digit subject key the subject index stores (so a subject is found after redaction, and the
value itself is never stored), the Ed25519 key that signs erasure certificates, and the key-encryption
keys (AES-256, newest first) that wrap the per-version data keys of restricted datasets. It is read
from `KEEL_GOVERN_KEY` or from the key file (`.keel/govern.key` by default, made 0600 on first use).
Whoever holds the database alone can neither reverse a subject key, forge a certificate nor decrypt.
It lives on the core floor because the blob store (floor 2) unwraps data keys with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keel.core.errors import ConfigError, InputError
from keel.core.settings import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography (~0.02 CPU-s of imports, measured) loads in the methods that encrypt or sign: hashing subjects,
# which `keel curate run`'s pii step does with every keyring it loads, needs only hmac.

__all__ = [
    "KEYRING_FORMAT",
    "SUBJECT_TYPES",
    "Keyring",
    "load_keyring",
    "new_kek",
    "normalize_subject",
    "parse_subject",
    "save_keyring",
    "verify_signature",
]

KEYRING_FORMAT = "keel.govern-keyring/1"
# The PII detector's types whose values identify a person; `type:value` on the command line.
SUBJECT_TYPES = (
    "email", "phone", "credit_card", "iban", "us_ssn", "ipv4", "ipv6", "person", "address", "date_of_birth",
    "id_document",
)  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_kek() -> tuple[str, bytes]:
    """A fresh key-encryption key: (id, 32 random bytes)."""
    return f"kek-{secrets.token_hex(6)}", secrets.token_bytes(32)


@dataclass(frozen=True)
class Keyring:
    """The subject-hashing key, the certificate-signing key and the key-encryption keys of one workspace."""

    subject_secret: bytes
    signing_seed: bytes
    source: str
    keks: tuple[tuple[str, bytes], ...] = ()  # (id, AES-256 key), the current one first

    @classmethod
    def generate(cls, source: str = "generated") -> Keyring:
        """A keyring with fresh random keys."""
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), source, (new_kek(),))

    def wrap(self, data_key: bytes) -> tuple[str, str]:
        """Encrypt a data key under the current key-encryption key: (kek id, base64 of nonce + ciphertext)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        kek_id, kek = self.keks[0]
        nonce = secrets.token_bytes(12)
        return kek_id, _b64(nonce + AESGCM(kek).encrypt(nonce, data_key, kek_id.encode()))

    def unwrap(self, kek_id: str, wrapped: str) -> bytes:
        """Decrypt a data key wrapped by `wrap`.

        Raises:
            ConfigError: This keyring lacks that key-encryption key, or the wrapped key does not open with it.
        """
        kek = dict(self.keks).get(kek_id)
        if kek is None:
            raise ConfigError(
                f"expected key-encryption key {kek_id} in the governance keyring {self.source}; it holds "
                f"{', '.join(k for k, _ in self.keks) or 'none'}",
                hint="restore the key file in use when the data was written, or finish `keel govern rotate-key`",
            )
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.b64decode(wrapped)
        try:
            return AESGCM(kek).decrypt(raw[:12], raw[12:], kek_id.encode())
        except InvalidTag:
            raise ConfigError(
                f"the data key wrapped under {kek_id} does not decrypt with the keyring {self.source}",
                hint="the key file was replaced; restore the original from your secret store",
            ) from None

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        """Parse a keyring's JSON; `source` names where it came from, for errors.

        Raises:
            ConfigError: The text is not a keyring of this format.
        """
        try:
            data = json.loads(text)
            if data.get("format") != KEYRING_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            subject, signing = base64.b64decode(data["subject"]), base64.b64decode(data["signing"])
            keks = tuple((str(k["id"]), base64.b64decode(k["key"])) for k in data["kek"])
            if len(subject) != 32 or len(signing) != 32 or not keks or any(len(k) != 32 for _, k in keks):
                raise ValueError("keys of 32 bytes")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"expected a governance keyring ({KEYRING_FORMAT}: JSON with base64 `subject`, `signing` and `kek` "
                f"keys of 32 bytes) in {source}; found something else ({exc})",
                hint="restore the key file from your secret store; a new one cannot find subjects hashed before",
            ) from None
        return cls(subject, signing, source, keks)

    def to_json(self) -> str:
        """The keyring as its key file holds it."""
        keks = [{"id": kek_id, "key": _b64(key)} for kek_id, key in self.keks]
        return json.dumps(
            {"format": KEYRING_FORMAT, "subject": _b64(self.subject_secret), "signing": _b64(self.signing_seed),
             "kek": keks}
        )  # fmt: skip

    def subject_key(self, subject: str) -> str:
        """The keyed hash of a normalized `type:value` subject, as the subject index stores it.

        Examples:
            >>> ring = Keyring(b"k" * 32, b"s" * 32, "test")
            >>> same = normalize_subject("email", "Jane@Example.com ")
            >>> ring.subject_key("email:jane@example.com") == ring.subject_key(same)
            True
        """
        return hmac.new(self.subject_secret, subject.encode("utf-8"), hashlib.sha256).hexdigest()

    def value_key(self, kind: str, value: str) -> str:
        """The keyed hash of a detected value of PII type `kind`."""
        return self.subject_key(normalize_subject(kind, value))

    @property
    def _signer(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.signing_seed)

    @property
    def public_key(self) -> str:
        """The certificate-verifying public key, hex (safe to publish)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, data: bytes) -> str:
        """An Ed25519 signature of `data`, hex."""
        return self._signer.sign(data).hex()


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """Whether `signature` (hex) signs `data` under the hex Ed25519 `public_key`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_keyring(settings: Settings, *, create: bool = True) -> Keyring:
    """The workspace's keyring: `KEEL_GOVERN_KEY`, else the key file, made (0600) on first use when `create`.

    Raises:
        ConfigError: The key is malformed, or missing and not to be created.
    """
    if settings.govern_key:
        return Keyring.from_json(settings.govern_key, "KEEL_GOVERN_KEY")
    path = settings.resolved_govern_key_file
    try:
        return Keyring.from_json(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"expected the governance key file {path}; it does not exist",
                hint="restore it from your secret store, or set KEEL_GOVERN_KEY",
            ) from None
    ring = Keyring.generate(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return Keyring.from_json(path.read_text(encoding="utf-8"), str(path))
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(ring.to_json())
        out.flush()
        os.fsync(out.fileno())
    return ring


def save_keyring(ring: Keyring, path: Path) -> None:
    """Replace the key file atomically (write 0600 beside it, fsync, rename): a crash leaves the old or the new."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(ring.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_DIGITS = re.compile(r"\D")


def normalize_subject(kind: str, value: str) -> str:
    """`type:value` with the value in one canonical spelling, so every spelling of it hashes alike.

    E-mails are case-folded; phone numbers, cards, IBANs and SSNs keep their digits (and letters
    for IBANs); other values are case-folded with runs of white space made one space.

    Examples:
        >>> normalize_subject("phone", "+1 (415) 555-0100")
        'phone:14155550100'
        >>> normalize_subject("email", " Jane.Doe@Example.COM")
        'email:jane.doe@example.com'
    """
    value = value.strip()
    if kind == "email":
        value = value.casefold()
    elif kind in ("phone", "credit_card", "us_ssn"):
        value = _DIGITS.sub("", value)
    elif kind == "iban":
        value = re.sub(r"\s", "", value).upper()
    else:
        value = " ".join(value.casefold().split())
    return f"{kind}:{value}"


def parse_subject(text: str) -> str:
    """A `--subject type:value` argument, normalized.

    Raises:
        InputError: No `type:` prefix, an unknown type, or an empty value.
    """
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not value.strip() or kind not in SUBJECT_TYPES:
        raise InputError(
            f"expected a subject as TYPE:VALUE with TYPE one of {', '.join(SUBJECT_TYPES)} "
            f"(e.g. email:jane@example.com); got {text!r}"
        )
    return normalize_subject(kind, value)


def keyring_path(settings: Settings) -> Path:
    """Where the key file is (even when `KEEL_GOVERN_KEY` takes its place)."""
    return settings.resolved_govern_key_file
