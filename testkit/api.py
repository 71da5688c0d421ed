"""Talking to a server the way its clients do: bearer headers, a test client holding one key
per role, and the clock a test moves by hand instead of sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from counter_server.appkeys import KEYS


def bearer(key: str) -> dict[str, str]:
    """The header a key travels in."""
    return {"Authorization": f"Bearer {key}"}


class Clock:
    """A clock tests move by hand. Starts on a weekday at 11:23 in Kanpur, in opening hours."""

    def __init__(self, start: float = 1_764_050_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    """A test client with one key per role, made through the server's own KeyService.

    ``await api.post(path, key=await api.cashier("S01-C1"), json=...)`` gives (status, body)."""

    client: TestClient
    admin: str = ""
    board: str = ""
    _cashiers: dict[str, str] = field(default_factory=dict)

    async def cashier(self, counter: str) -> str:
        """A cashier key at ``counter``, made on first use."""
        if counter not in self._cashiers:
            plain, _ = await self.client.app[KEYS].create("cashier", counter)
            self._cashiers[counter] = plain
        return self._cashiers[counter]

    async def request(self, method: str, path: str, key: str | None = None,
                      idem: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.update(bearer(key))
        if idem is not None:
            headers["Idempotency-Key"] = idem
        async with self.client.request(method, path, headers=headers, **kwargs) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()

    async def get(self, path: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        """A GET with ``key``, the admin's by default."""
        return await self.request("GET", path, key if key is not None else self.admin, **kw)

    async def post(self, path: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        """A POST with ``key``, the admin's by default."""
        return await self.request("POST", path, key if key is not None else self.admin, **kw)

    async def issue(self, substation: str = "S01", service: str = "bill_payment",
                    priority: str = "normal", key: str | None = None) -> dict:
        """A new token, which must be issued."""
        status, body = await self.post(f"/api/v1/substations/{substation}/tokens", key,
                                       json={"service": service, "priority": priority})
        assert status == 201, body
        return body["token"]

    async def next(self, counter: str, key: str | None = None) -> dict | None:
        """The token ``counter`` calls next (None when nobody waits)."""
        status, body = await self.post(f"/api/v1/counters/{counter}/next",
                                       key or await self.cashier(counter))
        assert status == 200, body
        return body["token"]

    async def act(self, token: dict, action: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        """A token action (start, finish, recall...), by its counter's cashier unless ``key``."""
        if key is None and token.get("counter"):
            key = await self.cashier(token["counter"])
        return await self.post(f"/api/v1/tokens/{token['id']}/{action}", key, **kw)
