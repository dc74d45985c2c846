"""Gateway API keys: argon2id-hashed secrets shown once, scoped to deployments, with a rate limit.

A key reads `keel_<id>_<secret>`: the id (a ULID) finds the row, so verifying costs one argon2
check; `KeyVerifier` then remembers the verdict under a sha256 of what was presented (a good key
for good, a wrong secret for a while), so repeated requests cost a dictionary lookup. Failed
checks are limited per key id and per client address, so guessing costs the guesser, not the
server. Knows nothing of HTTP: the gateway maps the errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, new_ulid
from keel.govern._errors import AuthenticationError, AuthenticationThrottledError, PermissionDeniedError
from keel.store import Store
from keel.store.schema import api_keys

__all__ = [
    "ApiKey",
    "AuthenticationError",
    "AuthenticationThrottledError",
    "CreatedKey",
    "KeyVerifier",
    "PermissionDeniedError",
    "authenticate_key",
    "create_key",
    "list_keys",
    "revoke_key",
]

_KEY = re.compile(r"keel_([0-9A-HJKMNP-TV-Z]{26})_([A-Za-z0-9_-]{20,})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Verification happens once per key per process (then the cache answers), so the library's
# defaults (64 MiB, 3 passes) cost nothing per request and keep brute force expensive.
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: never its secret."""

    id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_minute: float | None
    burst: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, deployment: str) -> bool:
        """Whether this key may call `deployment`."""
        return "*" in self.scopes or deployment in self.scopes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "rate_per_minute": self.rate_per_minute,
            "burst": self.burst,
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
            "revoked_at": format_time(self.revoked_at) if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its secret, which is shown this once and never stored."""

    key: ApiKey
    secret: str


def _from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=tuple(json.loads(row.scopes)),
        rate_per_minute=row.rate_per_minute,
        burst=row.burst,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def create_key(
    store: Store,
    name: str,
    *,
    scopes: list[str] | None = None,
    rate_per_minute: float | None = None,
    burst: int | None = None,
) -> CreatedKey:
    """Create an API key; its secret is in the result and nowhere else.

    Args:
        store: The workspace store.
        name: A label saying who or what uses the key.
        scopes: Deployment names the key may call; `["*"]` (the default) means all of them.
        rate_per_minute: Sustained requests per minute allowed; None for no limit.
        burst: Requests allowed at once above the sustained rate; defaults to one minute's worth.

    Returns:
        The stored key and the full secret to hand to its user.

    Raises:
        InputError: A bad name, an empty scope list, or a non-positive rate or burst.

    Examples:
        >>> created = create_key(store, "billing-app", scopes=["chat"], rate_per_minute=600)  # doctest: +SKIP
        >>> created.secret.startswith("keel_")  # doctest: +SKIP
        True
    """
    if not _NAME.fullmatch(name):
        raise InputError(f"expected a key name of letters, digits, '.', '_' or '-' (max 128); got {name!r}")
    from keel.govern._access import require

    require(store, "key.create", f"key:{name}")
    scopes = ["*"] if scopes is None else sorted(set(scopes))
    if not scopes:
        raise InputError("expected at least one scope (a deployment name, or '*' for all); got none")
    if (rate_per_minute is not None and rate_per_minute <= 0) or (burst is not None and burst <= 0):
        raise InputError(f"expected a positive rate and burst; got rate {rate_per_minute!r}, burst {burst!r}")
    if rate_per_minute is not None and burst is None:
        burst = max(1, int(rate_per_minute))
    key_id = new_ulid()
    secret = f"keel_{key_id}_{secrets.token_urlsafe(32)}"
    row = {
        "id": key_id,
        "name": name,
        "hash": _HASHER.hash(secret),
        "scopes": canonical_json(scopes),
        "rate_per_minute": rate_per_minute,
        "burst": burst,
        "created_by": store.actor,
        "created_at": store.clock(),
        "revoked_at": None,
    }
    with store.db.write() as conn:
        conn.execute(api_keys.insert().values(**row))
        store.audit(conn, "key.create", f"api-key:{key_id}", {"name": name, "scopes": scopes})
    return CreatedKey(_from_row(SimpleNamespace(**row)), secret)


def list_keys(store: Store, *, include_revoked: bool = False) -> list[ApiKey]:
    """Every key, oldest first, without secrets."""
    query = select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def revoke_key(store: Store, key_id: str) -> ApiKey:
    """Revoke a key at once; gateways refuse it from their next refresh (about a second).

    Raises:
        NotFoundError: No key has this id.
    """
    from keel.govern._access import require

    with store.db.read() as conn:
        name = conn.scalar(select(api_keys.c.name).where(api_keys.c.id == key_id))
    require(store, "key.revoke", f"key:{name or key_id}")
    with store.db.write() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r}", hint="see `keel key list`")
        if row.revoked_at is None:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=store.clock()))
            store.audit(conn, "key.revoke", f"api-key:{key_id}", {"name": row.name})
        return _from_row(conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one())


def authenticate_key(store: Store, presented: str) -> ApiKey:
    """The live key `presented` belongs to, checked with one argon2 verification (no cache, no throttle).

    For a process acting as a key's principal (`KEEL_API_KEY`); the gateway uses `KeyVerifier`.

    Raises:
        AuthenticationError: Malformed, unknown, wrong or revoked.
    """
    match = _KEY.fullmatch(presented.strip())
    if match is None:
        raise AuthenticationError("KEEL_API_KEY: expected an API key 'keel_<id>_<secret>'; got something else")
    with store.db.read() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == match.group(1))).first()
    if row is None:
        raise AuthenticationError("KEEL_API_KEY: unknown API key", hint="see `keel key list`")
    try:
        _HASHER.verify(row.hash, presented.strip())
    except (VerificationError, InvalidHashError):
        raise AuthenticationError("KEEL_API_KEY: invalid API key secret") from None
    if row.revoked_at is not None:
        raise AuthenticationError("KEEL_API_KEY: this API key has been revoked", hint="ask for a new key")
    return _from_row(row)


class KeyVerifier:
    """Verifies presented keys against the store, paying argon2 once per key and process.

    Thread-safe. `refresh()` reloads the key rows (call it periodically) so that revocations and
    new keys take effect without a restart; the verified-secret cache survives refreshes. A wrong
    secret is remembered for `window_s` (its hash, never the secret), so repeating it costs no
    argon2; more than `failures` failed checks within `window_s` for one key id, or from one client
    address, are refused with `AuthenticationThrottledError` before argon2 runs. An unknown key id
    reloads the key table at most once per `refresh_interval_s`.

    Args:
        store: The workspace store.
        failures: Failed checks allowed per key id and per client address within `window_s`.
        window_s: The window of `failures`, and how long a wrong secret is remembered.
        refresh_interval_s: Least time between reloads caused by unknown key ids.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        store: Store,
        *,
        failures: int = 10,
        window_s: float = 60.0,
        refresh_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._hashes: dict[str, str] = {}
        self._verified: dict[bytes, str] = {}  # sha256(presented) -> key id
        self._rejected: OrderedDict[bytes, float] = OrderedDict()  # sha256(presented) -> until (bounded LRU)
        self._failed: dict[str, deque[float]] = {}  # "id:…" / "ip:…" -> times of recent failed checks
        self._failures, self._window_s, self._refresh_interval_s = failures, window_s, refresh_interval_s
        self._clock = clock
        self._refreshed_at = float("-inf")
        self.argon2_checks = 0  # for tests and benchmarks
        self.refreshes = 0
        self.refresh()

    def refresh(self) -> None:
        """Reload key rows (ids, scopes, limits, revocations) from the database."""
        with self._store.db.read() as conn:
            rows = list(conn.execute(select(api_keys)))
        with self._lock:
            self._keys = {row.id: _from_row(row) for row in rows}
            self._hashes = {row.id: row.hash for row in rows}
            self._refreshed_at = self._clock()
            self.refreshes += 1

    def cached(self, presented: str) -> ApiKey | None:
        """The key, if this exact secret was verified before and the key is still live; no argon2."""
        key_id = self._verified.get(hashlib.sha256(presented.encode()).digest())
        if key_id is None:
            return None
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            raise AuthenticationError("this API key has been revoked", hint="ask for a new key")
        return key

    def _throttle(self, name: str, now: float) -> None:
        """Refuse if `name` failed too often within the window (the caller holds the lock)."""
        times = self._failed.get(name)
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if times is not None and not times:
            del self._failed[name]
        elif times is not None and len(times) >= self._failures:
            raise AuthenticationThrottledError(
                f"too many failed API key checks ({len(times)} in {self._window_s:.0f} s) for this "
                f"{'key' if name.startswith('id:') else 'client address'}",
                retry_after=max(1.0, times[0] + self._window_s - now),
            )

    def _fail(self, names: list[str], now: float, digest: bytes | None = None) -> None:
        with self._lock:
            for name in names:
                self._failed.setdefault(name, deque()).append(now)
            if len(self._failed) > 100_000:  # bound the table: forget the quietest names
                for stale in [n for n, t in self._failed.items() if not t or t[-1] <= now - self._window_s]:
                    del self._failed[stale]
            if digest is not None:
                self._rejected[digest] = now + self._window_s
                while len(self._rejected) > 10_000:
                    self._rejected.popitem(last=False)

    def verify(self, presented: str, *, client: str | None = None) -> ApiKey:
        """The live key `presented` belongs to.

        Args:
            presented: What the caller sent as its key.
            client: The caller's address, for the limit on failed checks per address.

        Raises:
            AuthenticationError: Malformed, unknown, wrong or revoked.
            AuthenticationThrottledError: Too many failed checks lately for the key id or the address.
        """
        key = self.cached(presented)
        if key is not None:
            return key
        now = self._clock()
        digest = hashlib.sha256(presented.encode()).digest()
        names = [f"ip:{client}"] if client else []
        match = _KEY.fullmatch(presented)
        if match is not None:
            names.append(f"id:{match.group(1)}")
        with self._lock:
            for name in names:
                self._throttle(name, now)
            remembered = self._rejected.get(digest)
        if remembered is not None and remembered > now:  # the same wrong secret again: no argon2
            self._fail(names, now)
            raise AuthenticationError("invalid API key secret")
        if match is None:
            self._fail(names, now)
            raise AuthenticationError("expected an API key 'keel_<id>_<secret>'; got something else")
        key_id = match.group(1)
        encoded = self._hashes.get(key_id)
        if encoded is None and now - self._refreshed_at >= self._refresh_interval_s:
            self.refresh()  # a key created since the last refresh; at most once per interval
            encoded = self._hashes.get(key_id)
        if encoded is None:
            self._fail(
                [n for n in names if n.startswith("ip:")], now
            )  # an unknown id is no one's key: count it against the address only
            raise AuthenticationError("unknown API key", hint="create one with `keel key create`")
        self.argon2_checks += 1
        try:
            _HASHER.verify(encoded, presented)
        except (VerificationError, InvalidHashError):
            self._fail(names, now, digest)
            raise AuthenticationError("invalid API key secret") from None
        with self._lock:
            self._verified[digest] = key_id
        return self.cached(presented) or self._keys[key_id]
