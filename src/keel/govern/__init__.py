"""Floor 3: governance: the gateway's API keys (argon2-hashed, scoped, rate limited) and PII rules (detect, redact)."""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.govern._keys import (
        ApiKey,
        AuthenticationError,
        AuthenticationThrottledError,
        CreatedKey,
        KeyVerifier,
        PermissionDeniedError,
        create_key,
        list_keys,
        revoke_key,
    )
    from keel.govern._pii_detect import PiiDetector, PiiSpan, PiiType
    from keel.govern._pii_redact import RedactMode, redact

# Each name loads its module on first use (PEP 562): curation's pii step loads the detector without the API
# keys' module, which loads the store (SQLAlchemy) and argon2.
_MODULES = {
    **dict.fromkeys(
        (
            "ApiKey",
            "AuthenticationError",
            "AuthenticationThrottledError",
            "CreatedKey",
            "KeyVerifier",
            "PermissionDeniedError",
            "create_key",
            "list_keys",
            "revoke_key",
        ),
        "_keys",
    ),
    **dict.fromkeys(("PiiDetector", "PiiSpan", "PiiType"), "_pii_detect"),
    **dict.fromkeys(("RedactMode", "redact"), "_pii_redact"),
}

__getattr__ = lazy_getattr("keel.govern", _MODULES)

__all__ = [
    "ApiKey",
    "AuthenticationError",
    "AuthenticationThrottledError",
    "CreatedKey",
    "KeyVerifier",
    "PermissionDeniedError",
    "PiiDetector",
    "PiiSpan",
    "PiiType",
    "RedactMode",
    "create_key",
    "list_keys",
    "redact",
    "revoke_key",
]
