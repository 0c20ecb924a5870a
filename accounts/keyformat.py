"""API-key format: generation, parsing (shape + checksum) and hashing with the pepper. No I/O.

Key format (see docs/accounts.md)::

    cs_live_<key_id:12>_<secret:32><checksum:6>        secret key, e.g. cs_live_4fJx0cQ2mZpA_...
    cs_pub_live_<key_id:12>_<secret:32><checksum:6>    browser key, e.g. cs_pub_live_4fJx0cQ2mZpA_...
    regex: ^cs_(?:(pub)_)?(live|test)_([0-9A-Za-z]{12})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$

* ``cs_live_`` / ``cs_test_`` — recognisable vendor prefix and the live/test environment;
  ``cs_pub_`` marks a browser key (publishable: restricted to origins, read-only, meant to sit in a
  web page), so secret scanners can tell the two apart — :data:`SCANNER_REGEX` matches secret keys
  only. Secret keys keep the format they always had;
* ``key_id`` — 12 random base62 characters (~71 bits), public: it is the lookup id and, with the
  prefix, the displayable ``prefix`` (``cs_live_<key_id>``) shown in lists and logs;
* ``secret`` — 32 random base62 characters (~190 bits) from :mod:`secrets`;
* ``checksum`` — CRC32 of everything before it, base62, 6 characters: typos and truncations are
  rejected without touching Redis or the database, and secret scanners can verify a match.

Only ``HMAC-SHA256(pepper, full_key)`` is stored. A fast keyed hash is the right tool for a
190-bit random secret: there is nothing to brute-force, so a slow password hash would only burn CPU
on every cache miss; the pepper (``ACCOUNTS["API_KEY_PEPPER"]``) lives outside the database, so a
leaked table alone does not even allow an offline check of candidate keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
KIND_SECRET = "secret"  # noqa: S105 - the name of a key type, not a secret
KIND_BROWSER = "browser"
KINDS = (KIND_SECRET, KIND_BROWSER)
_KIND_MARK = {KIND_SECRET: "", KIND_BROWSER: "pub_"}
KEY_RE = re.compile(
    r"^cs_(?:(pub)_)?(live|test)_([0-9A-Za-z]{12})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$",
)
#: For secret scanners (GitHub push protection, trufflehog, gitleaks custom rules): secret keys only.
SCANNER_REGEX = r"\bcs_(?:live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}\b"
#: Browser keys, for tools that inventory keys; they are public by design (not secrets).
BROWSER_KEY_REGEX = r"\bcs_pub_(?:live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}\b"


def _b62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _random_b62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _b62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def new_key_id() -> str:
    return _random_b62(KEY_ID_LENGTH)


def compose_key(environment: str, key_id: str, secret: str, kind: str = KIND_SECRET) -> str:
    body = f"{display_prefix(environment, key_id, kind)}_{secret}"
    return body + checksum(body)


def generate_key(environment: str, key_id: str | None = None, kind: str = KIND_SECRET) -> tuple[str, str]:
    """A new ``(key_id, full_key)``. The full key is returned to the caller exactly once."""
    if environment not in ("live", "test"):
        raise ValueError("environment must be 'live' or 'test'")
    if kind not in KINDS:
        raise ValueError("kind must be 'secret' or 'browser'")
    key_id = key_id or new_key_id()
    return key_id, compose_key(environment, key_id, _random_b62(SECRET_LENGTH), kind)


def display_prefix(environment: str, key_id: str, kind: str = KIND_SECRET) -> str:
    return f"cs_{_KIND_MARK[kind]}{environment}_{key_id}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    environment: str
    key_id: str
    full: str
    kind: str = KIND_SECRET


class MalformedKey(ValueError):
    pass


def parse_key(raw: str) -> ParsedKey:
    """Shape + checksum check; raises :class:`MalformedKey`. No I/O."""
    match = KEY_RE.match(raw)
    if match is None:
        raise MalformedKey("not a Candlestack API key")
    pub, environment, key_id, _secret, check = match.groups()
    if not hmac.compare_digest(checksum(raw[:-CHECKSUM_LENGTH]), check):
        raise MalformedKey("checksum mismatch")
    kind = KIND_BROWSER if pub else KIND_SECRET
    return ParsedKey(environment=environment, key_id=key_id, full=raw, kind=kind)


class KeyIdConverter:
    """URL converter of ``<keyid:key_id>``: base62, at most the length of the column, so a path with
    anything else in it (a NUL byte, a slash, a quote) matches no route instead of reaching the database."""

    regex = r"[0-9A-Za-z]{1,16}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def _pepper() -> bytes:
    return str(settings.ACCOUNTS["API_KEY_PEPPER"]).encode()


def hash_key(full_key: str) -> str:
    return hmac.new(_pepper(), full_key.encode("ascii"), hashlib.sha256).hexdigest()
