"""Allowed origins of browser keys: what an entry may look like, and whether an ``Origin`` matches.

An entry is a web origin as browsers send it in the ``Origin`` header, ``scheme://host[:port]``
(``https://app.example.com``, ``http://localhost:3000``), or a wildcard over the subdomains of a
domain, ``https://*.example.com``, which matches ``https://a.example.com`` and
``https://a.b.example.com`` but neither ``https://example.com`` nor ``https://evilexample.com``.
:data:`ORIGIN_PATTERN` is the whole rule (also published in the OpenAPI document): lowercase
``http``/``https``, lowercase host names (punycode for international names), an optional port
1-65535, no path, no trailing slash; a wildcard needs at least two labels after ``*.`` so that
``https://*.com`` is refused. A default port (``:443`` for https, ``:80`` for http) is dropped, as
browsers never send it. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
#: The full rule for one allowed-origin entry (ECMA-262 compatible, for the OpenAPI ``pattern``).
ORIGIN_PATTERN = rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|\*\.{_LABEL}(?:\.{_LABEL})+)(?::{_PORT})?$"
_ORIGIN_RE = re.compile(ORIGIN_PATTERN)
_DEFAULT_PORTS = {"https": ":443", "http": ":80"}
MAX_ORIGIN_LENGTH = 255


class InvalidOrigin(ValueError):
    pass


def normalise(value: str) -> str:
    """The stored form of an allowed-origin entry; raises :class:`InvalidOrigin`."""
    if len(value) > MAX_ORIGIN_LENGTH or not _ORIGIN_RE.fullmatch(value):
        raise InvalidOrigin(
            f"{value!r} is not an origin: use scheme://host[:port] in lowercase, http or https, no "
            "path and no trailing slash (e.g. https://app.example.com), or https://*.example.com for "
            "its subdomains"
        )
    scheme = value.split(":", 1)[0]
    default_port = _DEFAULT_PORTS[scheme]
    return value.removesuffix(default_port)


@dataclass(frozen=True, slots=True)
class OriginRules:
    """A key's allowed origins prepared for matching: exact origins in a set, wildcards as
    ``(scheme + "://", "." + domain, ":port" or "")``."""

    exact: frozenset[str] = frozenset()
    wildcards: tuple[tuple[str, str, str], ...] = ()

    def allows(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        for scheme, suffix, port in self.wildcards:
            if not origin.startswith(scheme):
                continue
            host_port = origin[len(scheme) :]
            host, colon, rest = host_port.partition(":")
            if (colon + rest) != port or "/" in host_port:
                continue
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        return False


NO_ORIGINS = OriginRules()


def rules(origins: tuple[str, ...] | list[str]) -> OriginRules:
    """Matching rules for stored (normalised) entries."""
    if not origins:
        return NO_ORIGINS
    exact = []
    wildcards = []
    for entry in origins:
        scheme, _, host_port = entry.partition("://")
        if host_port.startswith("*."):
            host, colon, port = host_port.partition(":")
            wildcards.append((scheme + "://", host[1:], colon + port))
        else:
            exact.append(entry)
    return OriginRules(exact=frozenset(exact), wildcards=tuple(wildcards))
