"""The errors of keel.govern, importable without argon2 (the serve extra) or casbin.

KeelError
├── AuthenticationError              no key, or a malformed, unknown, wrong or revoked one (HTTP 401)
│   └── AuthenticationThrottledError too many failed key checks lately (HTTP 429)
├── PermissionDeniedError            a role the principal lacks, or a key outside its scopes (HTTP 403)
└── ApprovalRequiredError            a protected move waits for another principal's approval
"""

from __future__ import annotations

from keel.core.errors import KeelError

__all__ = ["ApprovalRequiredError", "AuthenticationError", "AuthenticationThrottledError", "PermissionDeniedError"]


class AuthenticationError(KeelError):
    """No key, a malformed key, an unknown key, a wrong secret or a revoked key (HTTP 401)."""


class AuthenticationThrottledError(AuthenticationError):
    """Too many failed key checks lately for this key id or client address (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, hint=f"retry after {retry_after:.0f} s with a valid key")
        self.retry_after = retry_after


class PermissionDeniedError(KeelError):
    """A principal may not do what it asked: a role it lacks, or a key used outside its scopes (HTTP 403)."""


class ApprovalRequiredError(KeelError):
    """The move is protected: a request was filed and waits for another principal's approval."""

    def __init__(self, message: str, *, hint: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.request_id = request_id
