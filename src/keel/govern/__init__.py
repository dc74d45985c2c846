"""Floor 3: governance: principals, roles and the permission check, approvals, API keys, PII rules.

API keys are argon2-hashed, scoped and rate limited; PII rules detect and redact.
"""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.govern._access import (
        ACTIONS,
        BUILTIN_ROLES,
        CLASSIFICATIONS,
        Binding,
        Decision,
        Identity,
        access_enabled,
        check,
        classify_dataset,
        current_principal,
        dataset_classification,
        define_role,
        grant,
        list_bindings,
        list_roles,
        protect,
        require,
        require_read,
        revoke,
        whoami,
    )
    from keel.govern._approvals import (
        ApprovalRequest,
        approve,
        get_request,
        list_requests,
        reject,
    )
    from keel.govern._errors import (
        ApprovalRequiredError,
        AuthenticationError,
        AuthenticationThrottledError,
        PermissionDeniedError,
    )
    from keel.govern._keys import (
        ApiKey,
        CreatedKey,
        KeyVerifier,
        authenticate_key,
        create_key,
        list_keys,
        revoke_key,
    )
    from keel.govern._pii_detect import PiiDetector, PiiSpan, PiiType
    from keel.govern._pii_redact import RedactMode, redact

# Loaded on first use (PEP 562): a library call's permission check must not pay for the PII detectors.
_MODULES = {
    **dict.fromkeys(
        (
            "ACTIONS",
            "BUILTIN_ROLES",
            "CLASSIFICATIONS",
            "Binding",
            "Decision",
            "Identity",
            "access_enabled",
            "check",
            "classify_dataset",
            "current_principal",
            "dataset_classification",
            "define_role",
            "grant",
            "list_bindings",
            "list_roles",
            "protect",
            "require",
            "require_read",
            "revoke",
            "whoami",
        ),
        "_access",
    ),
    **dict.fromkeys(
        ("ApprovalRequest", "approve", "get_request", "list_requests", "reject"),
        "_approvals",
    ),
    **dict.fromkeys(
        ("ApprovalRequiredError", "AuthenticationError", "AuthenticationThrottledError", "PermissionDeniedError"),
        "_errors",
    ),
    **dict.fromkeys(
        (
            "ApiKey",
            "CreatedKey",
            "KeyVerifier",
            "authenticate_key",
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
    "ACTIONS",
    "ApiKey",
    "ApprovalRequest",
    "ApprovalRequiredError",
    "AuthenticationError",
    "AuthenticationThrottledError",
    "BUILTIN_ROLES",
    "Binding",
    "CLASSIFICATIONS",
    "CreatedKey",
    "Decision",
    "Identity",
    "KeyVerifier",
    "PermissionDeniedError",
    "PiiDetector",
    "PiiSpan",
    "PiiType",
    "RedactMode",
    "access_enabled",
    "approve",
    "authenticate_key",
    "check",
    "classify_dataset",
    "create_key",
    "current_principal",
    "dataset_classification",
    "define_role",
    "get_request",
    "grant",
    "list_bindings",
    "list_keys",
    "list_requests",
    "list_roles",
    "protect",
    "redact",
    "reject",
    "require",
    "require_read",
    "revoke",
    "revoke_key",
    "whoami",
]
