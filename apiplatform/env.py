"""Reading settings from the environment, in one place.

Every setting that varies between machines comes from an environment variable with a safe
development default. In production (``DEBUG=0``) the variables that must not keep their
development value raise :class:`ImproperlyConfigured` with a message that names them.
"""

from __future__ import annotations

import ipaddress
import os
from typing import overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_cidrs(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of IP addresses or CIDR ranges; a malformed one stops the start."""
    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address or CIDR range") from exc
    return values


def check_secret_key(secret_key: str | None, *, production: bool) -> None:
    """Refuse a missing or weak SECRET_KEY in production (the same rule as Django's security.W009)."""
    if not production:
        return
    if not secret_key:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0 (production mode).")
    if secret_key.startswith("django-insecure") or secret_key.startswith("dev-only"):
        raise ImproperlyConfigured("SECRET_KEY is a development key; set a real one for production.")
    if len(secret_key) < 50 or len(set(secret_key)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is too weak for production: use at least 50 characters and 5 distinct ones "
            "(python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )


def check_secret(name: str, value: str | None, *, production: bool, derivable: bool = True) -> str | None:
    """Refuse a weak secret in production (``x``, a short or repetitive value): the same rule as
    :func:`check_secret_key`. Unset (None or empty) is allowed: the caller derives it from SECRET_KEY,
    which is checked itself (``derivable=False``: the caller requires it and the message does not
    offer to leave it unset). Returns ``value``."""
    if production and value and (len(value) < 50 or len(set(value)) < 5):
        unset = ", or leave it unset to derive it from SECRET_KEY" if derivable else ""
        raise ImproperlyConfigured(
            f"{name} is too weak for production: use at least 50 characters and 5 distinct ones "
            f"(python -c 'import secrets; print(secrets.token_urlsafe(64))'){unset}."
        )
    return value
