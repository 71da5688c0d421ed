"""The server's listening sockets, bound before anything else happens.

``serve`` binds its address first, so a port already in use (or a host that is not this
machine's) is refused in one line before a data dir, an admin key or a simulated billing
server exists. The sockets are bound but not listening: aiohttp listens on them once the app
has started, so a client connecting early is refused rather than kept waiting.
"""

from __future__ import annotations

import errno
import resource
import socket


class ListenError(Exception):
    """The address cannot be served; the message names it and says what to do, in one line."""


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound TCP sockets for every address ``host`` names (as aiohttp would listen on)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sockets: list[socket.socket] = []
    seen: set[tuple] = set()
    try:
        for family, kind, proto, _, address in infos:
            if address in seen:
                continue
            seen.add(address)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # As asyncio does: a restart may bind over connections still in TIME_WAIT, but never
            # over a socket that is listening.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(_why(host, port, exc)) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def raise_open_files(wanted: int) -> str | None:
    """Raise this process's soft open-files limit towards ``wanted`` (never past the hard limit,
    which only root may raise): each live board or phone holds a socket, and the usual soft
    limit of 1024 would refuse the 1,000th. Returns a line to say when ``wanted`` is out of reach."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return None
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None
    return (f"open files limited to {soft} (wanted {wanted}; the hard limit is {hard}): fewer live "
            "boards and phones can connect; raise it with ulimit -Hn or the service's LimitNOFILE")


def address_of(sockets: list[socket.socket]) -> str:
    """The URL the first socket will answer on (the port the kernel gave, for --port 0)."""
    host, port = sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _why(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another counter-server, or another "
                "program); stop it, or give another --port")
    if exc.errno == errno.EACCES:
        return f"port {port} on {host}: permission denied (ports below 1024 need root); give --port 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine; give one it has, e.g. 127.0.0.1 or 0.0.0.0"
    return f"cannot listen on {host}:{port}: {exc.strerror}"
