"""Floor 3: governance. For now: the gateway's API keys (argon2-hashed, scoped, rate limited)."""

from keel.govern._keys import (
    ApiKey,
    AuthenticationError,
    CreatedKey,
    KeyVerifier,
    PermissionDeniedError,
    create_key,
    list_keys,
    revoke_key,
)

__all__ = [
    "ApiKey",
    "AuthenticationError",
    "CreatedKey",
    "KeyVerifier",
    "PermissionDeniedError",
    "create_key",
    "list_keys",
    "revoke_key",
]
