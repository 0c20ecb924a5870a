"""The SSRF-safe HTTP client of webhook deliveries (OWASP API7: server-side request forgery).

A webhook URL is chosen by a customer; the request is made from inside our network. So:

- **scheme**: ``https`` only; ``http`` only when ``ALERTS_WEBHOOK_ALLOW_LOOPBACK`` is on (development)
  and the host resolves to loopback. No user info in the URL.
- **addresses, at connection time**: :class:`GuardedBackend` resolves the host itself, refuses the
  connection if *any* address it resolves to is not public (private, loopback, link-local — the
  cloud metadata address 169.254.169.254 among them —, shared/CGNAT, multicast, reserved,
  unspecified, and the IPv4 inside IPv4-mapped, NAT64, 6to4 and Teredo IPv6 addresses), then connects
  to the address it checked. TLS keeps the host name (SNI and certificate check) and so does the
  ``Host`` header: only the TCP connection goes to the checked IP, so a DNS answer that changes
  between the check and the connection (DNS rebinding) cannot reach an inside address. The check at
  registration (:func:`url_refusal`) is only a courtesy: it tells the customer early.
- **no redirects** (a 3xx is a failed attempt, its Location is never fetched), no proxy from the
  environment, short timeouts (connect, then the whole attempt), and at most
  ``ALERTS_WEBHOOK_RESPONSE_BYTES`` of the response read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class AddressRefused(httpx.TransportError):
    """The host resolved to an address deliveries may not reach (or did not resolve)."""


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_refusal(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why deliveries may not connect to ``ip``, or None if they may."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = address_refusal(inner, allow_loopback=allow_loopback)
        return f"{reason} (inside {ip})" if reason else None
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64_LOCAL:
        return f"{ip} is a local-use NAT64 address"
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata lives there)"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_private:
        return f"{ip} is a private address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"{host} does not resolve: {exc}") from exc
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    if not out:
        raise AddressRefused(f"{host} does not resolve")
    return out


def checked_addresses(host: str, port: int, *, allow_loopback: bool) -> list[IPAddress]:
    """Resolve ``host``; raise AddressRefused if any address is refused (a mixed answer is refused)."""
    addresses = resolve(host, port)
    for ip in addresses:
        reason = address_refusal(ip, allow_loopback=allow_loopback)
        if reason:
            raise AddressRefused(f"{host} resolves to a refused address: {reason}")
    return addresses


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to checked addresses (resolve, check, connect to
    the checked IP). httpcore does TLS afterwards with the URL's host name as SNI."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, allow_loopback=self.allow_loopback)
        last: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise AddressRefused("unix sockets are never a webhook destination")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool that uses :class:`GuardedBackend`. Connections are
    never kept alive, so every request resolves and checks its destination again."""

    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__(verify=True, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=GuardedBackend(allow_loopback=allow_loopback),
        )


_clients: dict[bool, httpx.Client] = {}


def _client(allow_loopback: bool) -> httpx.Client:
    """One client per process and loopback rule (building a TLS context costs ~0.1 s): no redirects,
    no proxy or settings from the environment, short timeouts."""
    client = _clients.get(allow_loopback)
    if client is None:
        timeout = httpx.Timeout(
            settings.ALERTS_WEBHOOK_TIMEOUT, connect=settings.ALERTS_WEBHOOK_CONNECT_TIMEOUT
        )
        client = httpx.Client(
            transport=GuardedTransport(allow_loopback=allow_loopback),
            follow_redirects=False,
            trust_env=False,
            timeout=timeout,
        )
        _clients[allow_loopback] = client
    return client


def url_refusal(url: str, *, allow_loopback: bool | None = None, resolve_host: bool = True) -> str | None:
    """Why ``url`` cannot be a webhook URL, or None. Checks the scheme, the shape and (if
    ``resolve_host``) where the host resolves now; the same rules are enforced again at every
    connection."""
    if allow_loopback is None:
        allow_loopback = settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "the URL must start with https://"
    if parts.scheme == "http" and not allow_loopback:
        return "the URL must use https (http is allowed only to loopback in development)"
    if parts.username is not None or parts.password is not None:
        return "the URL may not contain a user name or password"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        reason = address_refusal(literal, allow_loopback=allow_loopback)
        if reason:
            return f"the host {reason}"
    if parts.scheme == "http" or resolve_host or literal is not None:
        default_port = 443 if parts.scheme == "https" else 80
        try:
            addresses = checked_addresses(host, port or default_port, allow_loopback=allow_loopback)
        except AddressRefused as exc:
            if parts.scheme == "http" or "does not resolve" not in str(exc):
                return str(exc)
            return None  # https to a name that does not resolve yet: checked again when delivering
        if parts.scheme == "http" and not all(ip.is_loopback for ip in addresses):
            return "http is allowed only to loopback (development); use https"
    return None


@dataclass
class PostResult:
    status_code: int | None
    duration_ms: int
    excerpt: str
    error: str

    @property
    def success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
    """POST ``body`` to ``url`` under the rules above; never raises for a network failure."""
    allow_loopback = settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK
    started = time.monotonic()
    deadline = started + settings.ALERTS_WEBHOOK_TIMEOUT
    limit = settings.ALERTS_WEBHOOK_RESPONSE_BYTES

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    reason = url_refusal(url, allow_loopback=allow_loopback, resolve_host=False)
    if reason:
        return PostResult(None, elapsed(), "", f"refused: {reason}")
    try:
        with _client(allow_loopback).stream("POST", url, content=body, headers=headers) as response:
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= limit or time.monotonic() > deadline:
                    break
            excerpt = bytes(received[:limit]).decode("utf-8", errors="replace")[:500]
            error = ""
            if response.is_redirect:
                error = "redirect not followed (webhook URLs must answer directly)"
            elif not response.is_success:
                error = f"HTTP {response.status_code}"
            return PostResult(response.status_code, elapsed(), excerpt, error)
    except AddressRefused as exc:
        return PostResult(None, elapsed(), "", f"refused: {exc}")
    except httpx.TimeoutException as exc:
        return PostResult(None, elapsed(), "", f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return PostResult(None, elapsed(), "", f"{type(exc).__name__}: {exc}"[:500])
