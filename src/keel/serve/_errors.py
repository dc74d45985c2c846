"""Errors the gateway answers with, each carrying its HTTP status and OpenAI error `type`/`code`.

One handler (in `_app`) renders any of them as `{"error": {"message", "type", "param", "code"}}`,
the shape the official `openai` client parses into its own exception classes.

    KeelError
    └── GatewayError
        ├── BadRequestError         400 invalid_request_error
        ├── ModelNotFoundError      404 invalid_request_error / model_not_found
        ├── TraceNotFoundError      404 invalid_request_error / trace_not_found
        ├── PayloadTooLargeError    413 invalid_request_error / request_too_large
        ├── RateLimitedError        429 rate_limit_exceeded
        └── UpstreamError           502 api_error (every route and the fallback failed)
    (401 and 403 come from keel.govern's AuthenticationError and PermissionDeniedError.)
"""

from __future__ import annotations

from typing import Any

from keel.core.echo import safe_message
from keel.core.errors import KeelError

__all__ = [
    "BadRequestError",
    "GatewayError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RetrievalError",
    "TraceNotFoundError",
    "UpstreamError",
    "error_body",
]


class GatewayError(KeelError):
    """An error the gateway returns to its caller instead of an answer."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.param = param


class BadRequestError(GatewayError):
    """The request body is malformed or breaks a deployment's policy."""

    status = 400
    type = "invalid_request_error"


class ModelNotFoundError(GatewayError):
    """The `model` field names no deployment."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class TraceNotFoundError(GatewayError):
    """Feedback names a trace the gateway never served (or whose trace was erased)."""

    status = 404
    type = "invalid_request_error"
    code = "trace_not_found"


class PayloadTooLargeError(GatewayError):
    """The request body is larger than the gateway accepts (`KEEL_MAX_BODY_BYTES`)."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitedError(GatewayError):
    """The key spent its token bucket; `retry_after` says when one token is back."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(GatewayError):
    """The backend failed (after retries), and so did the fallback if there was one."""

    status = 502
    type = "api_error"
    code = "upstream_error"


class RetrievalError(GatewayError):
    """A RAG route could not retrieve (index or embedding model failing): the service is unavailable, not broken."""

    status = 503
    type = "api_error"
    code = "retrieval_unavailable"


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error document.

    Examples:
        >>> error_body("no such model", "invalid_request_error", "model_not_found")["error"]["code"]
        'model_not_found'
    """
    # A message may repeat what the request sent: never all of a megabyte, nor its control characters.
    return {"error": {"message": safe_message(message), "type": type_, "param": param, "code": code}}
