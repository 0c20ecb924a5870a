"""Who is calling the public API with an API key: the principal (``request.auth``), the user
stand-in (``request.user``) and the scopes a key may carry. Immutable, no database behind it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from accounts.keyformat import KIND_BROWSER, KIND_SECRET

#: Scopes an API key may carry. Management scopes are never granted to API keys: the management
#: API accepts only user JWTs.
SCOPE_MARKET_DATA_READ = "market_data:read"
KEY_SCOPES: tuple[str, ...] = (SCOPE_MARKET_DATA_READ,)
#: The read-only scopes a browser key may carry (its key sits in a web page for anyone to copy).
BROWSER_KEY_SCOPES: tuple[str, ...] = (SCOPE_MARKET_DATA_READ,)


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """``request.auth`` on the public API: who is calling, immutable, no database behind it."""

    key_id: str
    prefix: str
    name: str
    organization_id: int
    organization_slug: str
    scopes: frozenset[str]
    environment: str
    expires_at: datetime | None
    allowed_ips: tuple[str, ...]
    kind: str = KIND_SECRET
    allowed_origins: tuple[str, ...] = ()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_test(self) -> bool:
        return self.environment == "test"

    @property
    def is_browser(self) -> bool:
        """A browser key: used from web pages on its ``allowed_origins`` only (accounts/cors.py)."""
        return self.kind == KIND_BROWSER


class ApiKeyUser:
    """``request.user`` on the public API: not a database user but the key acting for its tenant.

    ``is_authenticated`` is True; ``pk``/``id`` are None (there is no user row); ``organization_id``
    and ``key_id`` identify the caller; ``principal`` is the same object as ``request.auth``.
    """

    __slots__ = ("principal",)
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, principal: KeyPrincipal):
        self.principal = principal

    @property
    def organization_id(self) -> int:
        return self.principal.organization_id

    @property
    def key_id(self) -> str:
        return self.principal.key_id

    def __str__(self) -> str:
        return f"apikey:{self.principal.prefix}"

    def __repr__(self) -> str:
        return f"<ApiKeyUser {self.principal.prefix}>"
