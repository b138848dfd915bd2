"""Gateway users' API keys: stored as SHA-256 hashes, each with its own rate limit.

A key is a random token (``ens-`` and 43 URL-safe characters, 256 bits) shown once when made;
the keys file keeps only its SHA-256, so a leaked file grants nothing. The file is JSON::

    {"version": 1,
     "keys": [{"id": "alice", "sha256": "<64 hex digits>", "rate": 5.0, "burst": 10.0}]}

``rate`` is requests per second and ``burst`` the bucket size of that key's token bucket
(:class:`protocol.ratelimit.RateLimiter`). Parsing and checking are pure; reading and writing
the file are separate functions called by entry points.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ConfigError, RateLimitedError
from protocol.ratelimit import RateLimitConfig, RateLimiter
from router.errors import AuthenticationError, GatewayRateLimitedError, RouterInputError

__all__ = ["APIKey", "APIKeyStore", "add_key", "hash_token", "new_token"]

TOKEN_PREFIX = "ens-"  # noqa: S105 - a public prefix that marks tokens, not a secret
# A caller of an interactive application: a request a second on average, bursts of ten.
DEFAULT_RATE = 1.0
DEFAULT_BURST = 10.0


def new_token() -> str:
    """A fresh random API key (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) stored for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class APIKey:
    """One stored key: its name, the hash of its token and its rate limit."""

    id: str
    sha256: str
    rate: float = DEFAULT_RATE
    burst: float = DEFAULT_BURST

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 64:
            raise ConfigError("an API key id needs 1..64 characters")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ConfigError(f"API key {self.id!r}: sha256 must be 64 lowercase hex digits")
        if not (math.isfinite(self.rate) and self.rate > 0 and math.isfinite(self.burst)
                and self.burst >= 1):
            raise ConfigError(f"API key {self.id!r}: need rate > 0 and burst >= 1")


class APIKeyStore:
    """The known keys; authenticates bearer tokens and spends their rate limits.

    Raises:
        ConfigError: two keys share an id or a hash.
    """

    def __init__(self, keys: Iterable[APIKey]) -> None:
        self.keys = tuple(keys)
        self._by_hash = {k.sha256: k for k in self.keys}
        if len(self._by_hash) != len(self.keys) or len({k.id for k in self.keys}) != len(
                self.keys):
            raise ConfigError("two API keys share an id or a token")
        self._limiters = {k.id: RateLimiter(RateLimitConfig(rate=k.rate, burst=k.burst,
                                                            max_callers=1))
                          for k in self.keys}

    @classmethod
    def parse(cls, text: str) -> APIKeyStore:
        """A store from the keys file's JSON text.

        Raises:
            ConfigError: not valid JSON, or not the documented shape.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"API keys file is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(
                data.get("keys"), list):
            raise ConfigError('API keys file must be {"version": 1, "keys": [...]}')
        keys = []
        for item in data["keys"]:
            if not isinstance(item, dict):
                raise ConfigError("each API key entry must be an object")
            try:
                keys.append(APIKey(id=str(item["id"]), sha256=str(item["sha256"]),
                                   rate=float(item.get("rate", DEFAULT_RATE)),
                                   burst=float(item.get("burst", DEFAULT_BURST))))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"invalid API key entry: {exc}") from None
        return cls(keys)

    def to_json(self) -> str:
        """The keys file's text."""
        return json.dumps({"version": 1, "keys": [
            {"id": k.id, "sha256": k.sha256, "rate": k.rate, "burst": k.burst}
            for k in self.keys]}, indent=2) + "\n"

    def authenticate(self, authorization: str | None) -> APIKey:
        """The key of an ``Authorization: Bearer <token>`` header value.

        Raises:
            AuthenticationError: no bearer token, or an unknown one.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("You didn't provide an API key: send "
                                      "'Authorization: Bearer <key>'")
        digest = hash_token(authorization[len("Bearer "):].strip())
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise AuthenticationError("Incorrect API key provided")
        return key

    def spend(self, key: APIKey, now: float, cost: float = 1.0) -> None:
        """Take ``cost`` requests from ``key``'s bucket at ``now`` (seconds, monotonic).

        Raises:
            GatewayRateLimitedError: the bucket is empty; ``retry_after`` says for how long.
            RouterInputError: ``cost`` exceeds the key's burst, so no wait would ever let it
                through (a 429 would make clients retry forever).
        """
        if cost > key.burst:
            raise RouterInputError(
                f"this request asks for {cost:g} choices but API key {key.id!r} allows at most "
                f"{key.burst:g} at once; lower n", param="n")
        try:
            self._limiters[key.id].acquire(b"key", now, cost)
        except RateLimitedError as exc:
            raise GatewayRateLimitedError(f"Rate limit reached for API key {key.id!r}",
                                          retry_after=exc.retry_after) from None


def load_store(path: Path) -> APIKeyStore:
    """Read the keys file at ``path``.

    Raises:
        ConfigError: the file cannot be read or is invalid.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc.strerror}") from None
    return APIKeyStore.parse(text)


def add_key(path: Path, key_id: str, *, rate: float = DEFAULT_RATE,
            burst: float = DEFAULT_BURST) -> str:
    """Make a new key, store its hash in ``path`` (created 0600 if missing); return the token.

    Raises:
        ConfigError: the id is taken, or the file is invalid or cannot be written.
    """
    store = load_store(path) if path.exists() else APIKeyStore(())
    if any(k.id == key_id for k in store.keys):
        raise ConfigError(f"an API key called {key_id!r} already exists in {path}")
    token = new_token()
    updated = APIKeyStore((*store.keys, APIKey(key_id, hash_token(token), rate, burst)))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            handle.write(updated.to_json())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write API keys file {path}: {exc.strerror}") from None
    return token
