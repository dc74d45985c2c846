"""Floor 3: governance: the gateway's API keys (argon2-hashed, scoped, rate limited) and PII rules (detect, redact)."""

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
