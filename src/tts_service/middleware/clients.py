"""Who is calling: the client IP (X-Forwarded-For believed only from trusted proxies) and the rate-limit key."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

from tts_service.middleware._asgi import header

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str | None) -> list[IPNetwork]:
    """`10.0.0.0/8, 127.0.0.1` -> networks; a bad entry fails at startup rather than silently trusting nobody."""
    networks: list[IPNetwork] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES: {part!r} is not an IP address or network") from exc
    return networks


def _in(address: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class ClientResolver:
    """Finds the client IP of a request, walking X-Forwarded-For back through trusted proxies only."""

    def __init__(self, trusted_proxies: str | None) -> None:
        self.trusted = parse_networks(trusted_proxies)

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if not self.trusted or not _in(peer, self.trusted):
            return peer
        forwarded = header(scope, b"x-forwarded-for")
        if not forwarded:
            return peer
        # Rightmost first: each trusted proxy appended the address it saw; the first untrusted one is the client.
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _in(hop, self.trusted):
                return hop if _is_ip(hop) else peer
        return hops[0] if hops and _is_ip(hops[0]) else peer

    def resolve(self, scope: Scope) -> str:
        """The client IP, computed once per request and kept in the request state."""
        state = scope.setdefault("state", {})
        ip = state.get("client_ip")
        if not isinstance(ip, str):
            ip = self.client_ip(scope)
            state["client_ip"] = ip
        return ip


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
