"""The client's own address behind trusted load balancers, read from ``X-Forwarded-For``.

The per-address limits (the phone page's takes an hour, the rate limit's address buckets) must
see each client, not the balancer. Each proxy appends the address it received the request from,
so the header is read right to left, starting from the connection's peer: while the address in
hand is a trusted proxy, the entry it appended is believed; the first address that is not a
trusted proxy is the client. Whatever a client writes further left is never believed.

This never refuses a request: a request without the header (a health check, a client talking to
a replica directly) is the peer's own; an entry that is not an address stops the walk at the last
trusted hop. aiohttp_remotes has no class that does this: ``XForwardedStrict`` wants exactly one
entry per configured hop and answers 400 otherwise (no header, or one a carrier's proxy added),
``XForwardedFiltered`` believes the header from any peer, so a client talking to the server
directly picks its own address, and both answer 400 to an entry that is not an address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import hdrs, web

from .errors import Handler

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``--trusted-proxy`` values (addresses or networks such as 10.0.0.0/8) as networks;
    a value that is neither is a mistake in the configuration, said at start-up."""
    networks = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {entry!r} is not an address or a network") from None
    return tuple(networks)


def parse_address(raw: str) -> Address | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``, ``::1``),
    IPv4-mapped IPv6 as the IPv4 it maps; None for anything else."""
    text = raw.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        found = ip_address(text)
    except ValueError:
        return None
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def client_address(peer: str | None, forwarded: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """The right-most address in ``peer`` + ``X-Forwarded-For`` that is not a trusted proxy
    (or the left-most entry when every hop is trusted). ``forwarded`` holds the header's values,
    several headers being one list joined by commas."""
    if peer is None:
        return None
    current = parse_address(peer)
    if current is None:           # a Unix socket or such: nothing to walk from
        return peer
    chosen = peer
    hops = [hop for value in forwarded for hop in value.split(",")]
    for hop in reversed(hops):
        if not any(current in network for network in trusted):
            break
        address = parse_address(hop)
        if address is None:       # not an address: keep the last hop that was one
            break
        current, chosen = address, str(address)
    return chosen


def forwarded_for_middleware(trusted_proxies: Iterable[str]) -> Middleware:
    """A middleware that sets ``request.remote`` to the client behind ``trusted_proxies``."""
    trusted = trusted_networks(trusted_proxies)

    @web.middleware
    async def forwarded_for(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall(hdrs.X_FORWARDED_FOR, ())
        if values:
            address = client_address(request.remote, values, trusted)
            if address != request.remote:
                request = request.clone(remote=address)
        return await handler(request)

    return forwarded_for
