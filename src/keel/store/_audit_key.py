"""The audit log's secret: one 32-byte seed, kept outside the database, from which both keys derive.

The HMAC-SHA256 key seals every event (an attacker who can write the database but not read this
seed cannot rebuild the chain); the Ed25519 key signs checkpoints, so a head stored elsewhere can be
checked against the log later. The seed comes from `KEEL_AUDIT_KEY` (64 hex digits) or the file
`.keel/audit.key` (mode 0600, created atomically on first use). Knows nothing of the chain itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from keel.core.errors import ConfigError
from keel.core.settings import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["AuditKey", "load_audit_key", "verify_signature"]

_SEED_BYTES = 32


@dataclass(frozen=True)
class AuditKey:
    """The two keys derived from one seed, and the id recorded with every event sealed by them.

    Examples:
        >>> key = AuditKey.from_seed(bytes(32))
        >>> len(key.mac(b"event")), len(key.key_id)
        (64, 16)
    """

    key_id: str
    _mac_key: bytes = field(repr=False)
    _sign_seed: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> AuditKey:
        """Derive the HMAC key, the Ed25519 key and the key id from a 32-byte seed (domain-separated sha256)."""
        if len(seed) != _SEED_BYTES:
            raise ConfigError(f"expected a {_SEED_BYTES}-byte audit key; got {len(seed)} bytes")
        key_id = hashlib.sha256(b"keel-audit-id\0" + seed).hexdigest()[:16]
        mac_key = hashlib.sha256(b"keel-audit-hmac\0" + seed).digest()
        return cls(key_id, mac_key, hashlib.sha256(b"keel-audit-ed25519\0" + seed).digest())

    def mac(self, payload: bytes) -> str:
        """HMAC-SHA256 of `payload`, lowercase hex."""
        return hmac.new(self._mac_key, payload, hashlib.sha256).hexdigest()

    @cached_property
    def _signer(self) -> Ed25519PrivateKey:
        # Imported here: every change appends an audit event (HMAC only); few sign (~50 ms of imports).
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self._sign_seed)

    def sign(self, payload: bytes) -> str:
        """Ed25519 signature of `payload`, base64."""
        return base64.b64encode(self._signer.sign(payload)).decode()

    @property
    def public_key(self) -> str:
        """The Ed25519 public key, base64: what a checkpoint's reader needs to check its signature."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()


def verify_signature(public_key_b64: str, signature_b64: str, payload: bytes) -> bool:
    """Whether `signature_b64` is a valid Ed25519 signature of `payload` by `public_key_b64`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _parse_seed(text: str, origin: str) -> bytes:
    value = text.strip()
    try:
        seed = bytes.fromhex(value)
    except ValueError:
        seed = b""
    if len(seed) != _SEED_BYTES:
        raise ConfigError(
            f"{origin}: expected an audit key of {2 * _SEED_BYTES} hex digits; got {len(value)} characters",
            hint="generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    return seed


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o007:
        raise ConfigError(
            f"the audit key file {path} may be read by any user (mode {mode:o}); it must be 0600 (or 0640 when shared)",
            hint=f"run `chmod 600 {path}`",
        )
    return _parse_seed(path.read_text(encoding="ascii"), str(path))


def _create_key_file(path: Path, mode: int) -> None:
    """Write a fresh seed to `path` unless another process got there first (link() never replaces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(_SEED_BYTES) + "\n")
        staged.chmod(mode)  # os.open's mode is filtered by the umask
        try:
            os.link(staged, path)
        except FileExistsError:
            pass  # a concurrent first writer made it: use theirs
    finally:
        staged.unlink(missing_ok=True)


def load_audit_key(settings: Settings, *, create: bool = True) -> AuditKey | None:
    """The workspace's audit key: `KEEL_AUDIT_KEY`, else `.keel/audit.key` (created if `create`).

    Returns:
        The key, or None when there is none and `create` is False.

    Raises:
        ConfigError: The key is malformed, or its file may be read by other users.
    """
    if settings.audit_key:
        return AuditKey.from_seed(_parse_seed(settings.audit_key, settings.source_of("audit_key")))
    path = settings.audit_key_file
    try:
        if not path.exists():
            if not create:
                return None
            _create_key_file(path, 0o640 if settings.shared else 0o600)
        return AuditKey.from_seed(_read_key_file(path))
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the audit key file {path}: {exc.strerror}",
            hint="set KEEL_AUDIT_KEY, or run where you may write the workspace's .keel folder",
        ) from None
