"""Encryption at rest of webhook signing secrets (docs/alerts.md, "Security").

A signing secret must stay readable (every delivery is signed with it), so it is encrypted, not
hashed: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under keys from
``ALERTS_SECRET_KEYS``. The first key encrypts; every key decrypts (MultiFernet), so a new key is
put first, ``manage.py alerts_rotate_secret_key`` re-encrypts every stored secret under it, and the
old key is removed afterwards.

Each configured value (a long random string, like the other secrets) becomes a Fernet key through
HKDF-SHA256 (:data:`HKDF_INFO`). In development (``DEBUG``) with the setting unset, the one key is
derived the same way from ``SECRET_KEY``; production refuses to start without the setting
(apiplatform/settings.py).
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING = "ALERTS_SECRET_KEYS"
#: HKDF's context string: a key derived for this use is useless for any other.
HKDF_INFO = b"candlestack alerts webhook signing secrets, fernet key v1"


class SecretNotDecryptable(ImproperlyConfigured):  # a configuration error, named for what failed
    """A stored secret that no key in ALERTS_SECRET_KEYS decrypts (its key was removed, or the
    value is not a token)."""


def fernet_key(material: str) -> bytes:
    """The Fernet key (32 bytes, url-safe base64) derived from a configured key with HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(material.encode())
    return base64.urlsafe_b64encode(raw)


def key_materials() -> tuple[str, ...]:
    """The configured keys, newest first; with none set, ``SECRET_KEY`` (development and tests only:
    the settings refuse to start without ALERTS_SECRET_KEYS when DEBUG=0)."""
    return tuple(k for k in settings.ALERTS_SECRET_KEYS if k) or (str(settings.SECRET_KEY),)


@functools.lru_cache(maxsize=8)
def _fernets(materials: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    fernets = [Fernet(fernet_key(m)) for m in materials]
    return MultiFernet(fernets), fernets[0]


def encrypt(plain: str) -> str:
    """The token stored for ``plain``, under the newest key."""
    return _fernets(key_materials())[0].encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The plain secret of a stored token, with whichever configured key encrypted it."""
    try:
        return _fernets(key_materials())[0].decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretNotDecryptable(
            f"A stored webhook signing secret cannot be decrypted with any key in {SETTING}: the key "
            f"that encrypted it was removed (put it back in {SETTING}, after the newest, and run "
            "`manage.py alerts_rotate_secret_key`), or the stored value is not an encrypted secret."
        ) from None


def is_current(token: str) -> bool:
    """Whether ``token`` is encrypted under the newest key already."""
    try:
        _fernets(key_materials())[1].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """``token`` encrypted under the newest key (the same secret); :class:`SecretNotDecryptable`
    when no configured key decrypts it."""
    try:
        return _fernets(key_materials())[0].rotate(token.encode()).decode()
    except InvalidToken:
        decrypt(token)  # raises the error naming the setting
        raise
