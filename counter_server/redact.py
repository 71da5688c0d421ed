"""Secrets out of what is shown: a URL's password, wherever a URL is logged or sent to ops."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***`` (the user name, host and port kept), so
    ops can tell which server is meant without learning how to log in to it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host_port = parts.netloc.rpartition("@")   # keeps [IPv6] brackets and the port
    user = user_info.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host_port}"))
