"""API keys: where a request may carry one, and checking it in constant time.

Keys are held only as SHA-256 digests. A presented token is hashed and compared with every
known digest using `hmac.compare_digest`, without stopping at the first match, so the time
taken depends neither on which key matched nor on how long a prefix a guess shares with a
real key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

BEARER = "bearer "
API_KEY_HEADER = "kyutai-api-key"
QUERY_PARAM = "token"
KYUTAI_QUERY_PARAM = "auth_id"
"""moshi-server's query parameter for the key (its clients' alternative to the header)."""
_DIGEST_PREFIX = "sha256:"


def digest(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return "stt_" + secrets.token_urlsafe(32)


def hashed_line(key: str, label: str | None = None) -> str:
    """One line of a hashed keys file."""
    entry = _DIGEST_PREFIX + digest(key)
    return f"{label} {entry}" if label else entry


@dataclass(frozen=True)
class _Entry:
    label: str
    digest: bytes


class KeyFileError(ValueError):
    """A hashed keys file line is not `[label] sha256:<64 hex digits>`."""


class Authenticator:
    """Known keys, by label. Empty means authentication is off."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._entries = tuple(_Entry(label, bytes.fromhex(hexdigest)) for label, hexdigest in entries)

    @classmethod
    def from_settings(cls, api_keys: str | None, api_keys_file: str | None) -> Authenticator:
        entries: list[tuple[str, str]] = []
        for i, key in enumerate(k.strip() for k in (api_keys or "").split(",")):
            if key:
                entries.append((f"key{i + 1}", digest(key)))
        if api_keys_file:
            entries.extend(parse_key_file(Path(api_keys_file).read_text(encoding="utf-8")))
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, token: str | None) -> str | None:
        """The label of the key `token` is, or None. Constant time in the token's content."""
        if token is None:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: str | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest) and found is None:
                found = entry.label
        return found


def parse_key_file(text: str) -> list[tuple[str, str]]:
    """(label, hex digest) pairs; blank lines and `#` comments are skipped."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        label, entry = (parts[0], parts[1]) if len(parts) == 2 else (f"line{number}", parts[0])
        hexdigest = entry.removeprefix(_DIGEST_PREFIX)
        if len(parts) > 2 or not entry.startswith(_DIGEST_PREFIX) or len(hexdigest) != 64:
            raise KeyFileError(f"line {number}: expected `[label] sha256:<64 hex digits>`")
        try:
            bytes.fromhex(hexdigest)
        except ValueError:
            raise KeyFileError(f"line {number}: digest is not hexadecimal") from None
        out.append((label, hexdigest.lower()))
    return out


def extract_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer`, the `kyutai-api-key` header,
    `?token=` (browsers cannot set headers on a WebSocket) or moshi-server's `?auth_id=`.
    Nothing else counts."""
    authorization = headers.get("authorization")
    if authorization is not None and authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip()
    header = headers.get(API_KEY_HEADER)
    if header is not None:
        return header.strip()
    return query.get(QUERY_PARAM, query.get(KYUTAI_QUERY_PARAM))
