"""Signed webhooks: endpoints ops register, deliveries from the durable notice log, verified
with the Standard Webhooks reference package (never our own code), across ``kill -9``."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from counter_server.app import create_app
from counter_server.appkeys import KEYS, STORE
from counter_server.config import Settings, WebhooksConfig, load_scenario
from testkit.api import Api, Clock, bearer
from testkit.processes import ServerProcess, free_port
from testkit.scenarios import LAKESIDE, busy_hall
from testkit.waiting import wait_until_async
from .test_day_close import TEST_REDIS_URL, forget_redis

FAST_RETRIES = "\n[webhooks]\nretry_first_s = 0.05\nretry_max_s = 0.3\ntimeout_s = 2\n"


@dataclass
class Receiver:
    """A webhook receiver on loopback that keeps every delivery as it came (body and headers)."""

    port: int = field(default_factory=free_port)
    hang: bool = False          # accept and never answer: a receiver that is alive but stuck
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        async def take(request: web.Request) -> web.Response:
            if self.hang:
                await asyncio.sleep(3600)
            self.got.append((await request.read(), {k.lower(): v for k, v in request.headers.items()}))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hooks", take)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def verified(self, secret: str) -> list[dict]:
        """Every delivery, each checked by the reference package (raises on a bad signature)."""
        verifier = Verifier(secret)
        return [{"id": headers["webhook-id"], **verifier.verify(body, headers)} for body, headers in self.got]


def lakeside_with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "lakeside-webhooks.toml"
    path.write_text(LAKESIDE.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


async def register(api: Api, url: str, events: list[str], **extra) -> tuple[int, dict]:
    return await api.post("/api/v1/ops/webhooks", api.admin, json={"url": url, "events": events, **extra})


async def test_endpoints_are_checked_listed_without_their_secret_and_removed(api: Api):
    for url in ("ftp://10.0.0.5/sms", "http://user:pw@10.0.0.5/in", "http://10.0.0.5:70000/in"):
        status, body = await register(api, url, ["token.called"])     # not the URL's form
        assert status == 422 and body["error"]["message"].startswith("url"), body
    refused = {"http://169.254.169.254/latest/meta-data": "link-local",     # cloud metadata
               "http://[fe80::1]:8000/in": "link-local",
               "http://no-such-host.invalid/in": "does not resolve"}
    for url, words in refused.items():
        status, body = await register(api, url, ["token.called"])
        assert status == 409 and body["error"]["code"] == "url_refused" and words in body["error"]["message"], body
    status, body = await register(api, "http://127.0.0.1:9/in", ["token.calling"])
    assert status == 422 and "events" in body["error"]["message"] and "token.called" in body["error"]["message"], body
    status, body = await register(api, "http://127.0.0.1:9/in", ["token.called"], secret="whsec_short")
    assert status == 422, body

    status, made = await register(api, "http://10.1.2.3:8000/sms", ["token.called", "token.near"])
    assert status == 201, made
    hook = made["webhook"]
    assert hook["secret"].startswith("whsec_") and Verifier(hook["secret"])     # the spec's form
    assert hook["state"] == "active" and hook["events"] == ["token.called", "token.near"]
    status, listed = await api.get("/api/v1/ops/webhooks", api.admin)
    assert status == 200 and [h["id"] for h in listed["webhooks"]] == [hook["id"]]
    assert "secret" not in listed["webhooks"][0]
    cashier = await api.cashier(next(iter(api.client.app[KEYS].scenario.counters)))
    status, body = await api.get("/api/v1/ops/webhooks", cashier)
    assert status == 403, body
    status, _ = await api.request("DELETE", f"/api/v1/ops/webhooks/{hook['id']}", api.admin)
    assert status == 200
    status, body = await api.request("DELETE", f"/api/v1/ops/webhooks/{hook['id']}", api.admin)
    assert status == 404 and body["error"]["code"] == "webhook_not_found"


async def test_deliveries_are_signed_and_every_event_arrives_after_kill_9_while_the_receiver_is_down(
        tmp_path: Path):
    config = lakeside_with(tmp_path, FAST_RETRIES)
    scenario = load_scenario(config)
    sid, service, (first, second, *_) = busy_hall(scenario)
    receiver = Receiver()
    await receiver.start()
    server = ServerProcess(data_dir=tmp_path / "data", config=config)
    server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url, headers=bearer(server.admin_key)) as http:
            async def post(path: str, **body) -> dict:
                async with http.post(path, json=body) as resp:
                    assert resp.status in (200, 201), (path, resp.status, await resp.text())
                    return await resp.json()

            hook = (await post("/api/v1/ops/webhooks", url=receiver.url,
                               events=["token.called", "token.near", "token.no_show"]))["webhook"]
            # A consumer takes a token from a phone and asks for an SMS: first in line, so near at once.
            phone = await post(f"/api/v1/public/substations/{sid}/tokens", service=service, account="2140000042",
                               phone="+91 98765 43210")
            await post(f"/api/v1/public/tokens/{phone['url'].rsplit('/', 1)[1]}/sms", mobile="+91 98765 43210")
            issued = [(await post(f"/api/v1/substations/{sid}/tokens", service=service))["token"] for _ in range(3)]
            await wait_until_async(lambda: asyncio.sleep(0, len(receiver.got)), done=lambda n: n == 1,
                                   what="the near SMS delivered", timeout=5)
            called = (await post(f"/api/v1/counters/{first}/next"))["token"]
            assert called["number"] == phone["token"]["number"]
            await wait_until_async(lambda: asyncio.sleep(0, len(receiver.got)), done=lambda n: n == 2,
                                   what="the first token.called delivered", timeout=5)
            near, delivered = receiver.verified(hook["secret"])
            assert near["type"] == "token.near" and near["data"]["sms"]["to"] == "+919876543210"
            assert delivered["type"] == "token.called" and delivered["data"]["token"]["number"] == called["number"]
            assert delivered["data"]["sms"]["to"] == "+919876543210" and called["number"] in delivered["data"]["sms"]["text"]
            assert delivered["data"]["counter_name"] == scenario.counters[first].label
            assert called["number"] in delivered["data"]["text"] and called["number"] in delivered["data"]["text_hi"]
            with pytest.raises(WebhookVerificationError):          # the signature covers the body
                body, headers = receiver.got[1]
                Verifier(hook["secret"]).verify(body.replace(b"called", b"calles"), headers)

            await receiver.stop()                                  # the receiver goes down
            recalls = scenario.policy.recalls_before_no_show      # as many as the scenario asks
            for _ in range(recalls):
                await post(f"/api/v1/tokens/{called['id']}/recall")
            await post(f"/api/v1/tokens/{called['id']}/no-show")
            again = (await post(f"/api/v1/counters/{second}/next"))["token"]

            async def endpoint() -> dict:
                async with http.get("/api/v1/ops/webhooks") as resp:
                    return (await resp.json())["webhooks"][0]

            failing = await wait_until_async(endpoint, done=lambda h: h["failed_attempts"] >= 2,
                                             what="deliveries failing while the receiver is down", timeout=5)
            assert failing["state"] == "failing" and failing["recent"][0]["ok"] is False
        server.kill()                                              # kill -9, with three undelivered
        await receiver.start()
        server.start()
        await wait_until_async(lambda: asyncio.sleep(0, {d["id"] for d in receiver.verified(hook["secret"])}),
                               done=lambda ids: len(ids) >= recalls + 4, what="every event after the restart",
                               timeout=15)
    finally:
        server.stop()
        await receiver.stop()
    got = receiver.verified(hook["secret"])
    by_id = {d["id"]: d for d in got}                              # at least once: repeats share an id
    kinds = sorted((d["type"], d["data"]["token"]["number"], d["data"]["token"]["recalls"]) for d in by_id.values())
    assert kinds == sorted([("token.near", called["number"], 0),
                            *(("token.called", called["number"], n) for n in range(recalls + 1)),
                            ("token.no_show", called["number"], recalls), ("token.called", again["number"], 0)])
    assert again["number"] == issued[0]["number"]
    assert "98765" not in server.log()                             # the number is never logged


async def test_a_stuck_endpoint_neither_slows_token_issue_nor_holds_back_another(tmp_path: Path, aiohttp_client):
    scenario = replace(load_scenario(LAKESIDE), webhooks=WebhooksConfig(timeout_s=3, retry_first_s=0.05,
                                                                         retry_max_s=0.2))
    clock = Clock(time.time())
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                      clock=clock, rate_limit_per_s=0, write_admin_key=False)))
    admin, _ = await client.app[KEYS].create("admin")
    api = Api(client=client, admin=admin, board=admin)
    stuck, healthy = Receiver(hang=True), Receiver()
    await stuck.start()
    await healthy.start()
    try:
        assert (await register(api, stuck.url, ["token.called"]))[0] == 201
        status, made = await register(api, healthy.url, ["token.called"])
        sid, service, counters = busy_hall(scenario)
        times = []
        for _ in range(20):
            started = time.monotonic()
            token = await api.issue(sid, service)
            times.append(time.monotonic() - started)
        for counter in counters[:2]:
            assert (await api.next(counter)) is not None
        await wait_until_async(lambda: asyncio.sleep(0, len(healthy.got)), done=lambda n: n == 2,
                               what="the healthy endpoint's deliveries while the other hangs", timeout=3)
        assert max(times) < 0.5, times                            # the stuck one takes 3 s a try
        assert len(Verifier(made["webhook"]["secret"]) and healthy.verified(made["webhook"]["secret"])) == 2
        assert token["number"]
    finally:
        await stuck.stop()
        await healthy.stop()


async def test_an_endpoint_failing_past_its_time_is_disabled_and_ops_can_enable_it(tmp_path: Path, aiohttp_client):
    scenario = replace(load_scenario(LAKESIDE), webhooks=WebhooksConfig(timeout_s=1, retry_first_s=0.05,
                                                                         retry_max_s=0.1, disable_after_minutes=5))
    clock = Clock(time.time())
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                      clock=clock, rate_limit_per_s=0, write_admin_key=False)))
    admin, _ = await client.app[KEYS].create("admin")
    api = Api(client=client, admin=admin, board=admin)
    gone = Receiver()                                             # never started: nothing listens
    status, made = await register(api, gone.url, ["token.called"])
    hook_id = made["webhook"]["id"]
    sid, service, counters = busy_hall(scenario)
    await api.issue(sid, service)
    await api.next(counters[0])

    async def endpoint() -> dict:
        return (await api.get("/api/v1/ops/webhooks", api.admin))[1]["webhooks"][0]

    await wait_until_async(endpoint, done=lambda h: h["state"] == "failing", what="failing", timeout=3)
    clock.now += 5 * 60 + 1                                       # failing for longer than allowed
    disabled = await wait_until_async(endpoint, done=lambda h: h["state"] == "disabled", what="disabled", timeout=3)
    assert "tries failed, the last: " in disabled["disabled_reason"] and disabled["recent"][0]["error"]
    assert disabled["failing_since"] is not None
    attempts = disabled["failed_attempts"]
    await asyncio.sleep(0.5)
    assert (await endpoint())["failed_attempts"] == attempts      # no more tries
    await gone.start()                                            # the receiver is fixed
    try:
        status, body = await api.post(f"/api/v1/ops/webhooks/{hook_id}/enable", api.admin)
        assert status == 200 and body["webhook"]["state"] == "active", body
        await wait_until_async(lambda: asyncio.sleep(0, len(gone.got)), done=lambda n: n == 1,
                               what="the kept notice delivered once enabled", timeout=3)
    finally:
        await gone.stop()


async def test_two_redis_replicas_deliver_each_notice_once(tmp_path: Path, aiohttp_client):
    """Both replicas find the endpoint; one holds it at a time, so a change made on either
    goes out once (at least once is the promise; twice in normal running would be a fault)."""
    scenario = replace(load_scenario(LAKESIDE), webhooks=WebhooksConfig(retry_first_s=0.05, retry_max_s=0.2))
    base = Settings(data_dir=tmp_path / "a", scenario=scenario, clock=Clock(time.time()), rate_limit_per_s=0,
                    write_admin_key=False, store_engine="redis", redis_url=TEST_REDIS_URL,
                    redis_prefix=f"test-{uuid.uuid4().hex[:12]}:")
    a = await aiohttp_client(create_app(base))
    b = await aiohttp_client(create_app(replace(base, data_dir=tmp_path / "b")))
    receiver = Receiver()
    await receiver.start()
    try:
        admin, _ = await a.app[KEYS].create("admin")
        on_a, on_b = Api(client=a, admin=admin, board=admin), Api(client=b, admin=admin, board=admin)
        status, made = await register(on_a, receiver.url, ["token.called"])
        assert status == 201, made
        sid, service, counters = busy_hall(scenario)
        for replica in (on_a, on_b, on_a, on_b):
            await replica.issue(sid, service)
        for replica, counter in zip((on_b, on_a), counters):
            assert await replica.next(counter) is not None
        await wait_until_async(lambda: asyncio.sleep(0, len(receiver.got)), done=lambda n: n >= 2,
                               what="both calls delivered", timeout=5)
        await asyncio.sleep(1.0)                                   # time for a second copy to show
        ids = [d["id"] for d in receiver.verified(made["webhook"]["secret"])]
        assert len(ids) == len(set(ids)) == 2, ids
    finally:
        await receiver.stop()
        await forget_redis(base)


async def test_an_sms_goes_when_the_turn_is_near_and_when_called_and_the_number_is_then_erased(
        tmp_path: Path, aiohttp_client, caplog):
    lakeside = load_scenario(LAKESIDE)       # "near" by people ahead only: minutes set to none
    scenario = replace(lakeside, webhooks=WebhooksConfig(retry_first_s=0.05, retry_max_s=0.2),
                       phones=replace(lakeside.phones, sms_near_minutes=0))
    near_ahead = scenario.phones.sms_near_ahead
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                      clock=Clock(time.time()), rate_limit_per_s=0,
                                                      write_admin_key=False)))
    admin, _ = await client.app[KEYS].create("admin")
    api = Api(client=client, admin=admin, board=admin)
    sid, service, (counter, *_) = busy_hall(scenario)
    ahead = [await api.issue(sid, service) for _ in range(near_ahead + 1)]    # one more than "near"
    status, taken = await api.post(f"/api/v1/public/substations/{sid}/tokens", key=None,
                                   json={"service": service, "account": "2140000042", "phone": "+51 987 654 321"})
    assert status == 201, taken
    link = taken["url"].rsplit("/", 1)[1]
    sms_path = f"/api/v1/public/tokens/{link}/sms"
    status, body = await api.post(sms_path, key=None, json={"mobile": "+51 987 654 321"})
    assert status == 409 and body["error"]["code"] == "sms_unavailable", body    # no gateway: no promise
    assert (await api.get(sms_path, key=None))[1] == {"sms": None, "offered": False, "near_ahead": near_ahead,
                                                      "near_minutes": scenario.phones.sms_near_minutes}

    status, near_only = await register(api, "http://127.0.0.1:9/near", ["token.near"])
    assert (await api.get(sms_path, key=None))[1]["offered"] is False    # "and when called" would not be kept
    await api.request("DELETE", f"/api/v1/ops/webhooks/{near_only['webhook']['id']}", api.admin)
    receiver = Receiver()
    await receiver.start()
    try:
        status, made = await register(api, receiver.url, ["token.near", "token.called"])
        status, asked = await api.post(sms_path, key=None, json={"mobile": "+51 987 654 321"})
        assert status == 201 and asked["sms"]["mobile_hint"] == "•••• 4321" and not asked["sms"]["near_sent"], asked
        await asyncio.sleep(0.5)
        assert receiver.got == []                                 # near_ahead + 1 ahead: not near yet
        current = await api.next(counter)
        assert current["id"] == ahead[0]["id"]                    # now near_ahead are ahead
        await wait_until_async(lambda: asyncio.sleep(0, len(receiver.got)), done=lambda n: n >= 2,
                               what="the call's notice and the near SMS", timeout=5)
        secret = made["webhook"]["secret"]
        near = next(d for d in receiver.verified(secret) if d["type"] == "token.near")
        number = taken["token"]["number"]
        assert near["data"]["token"]["number"] == number and near["data"]["ahead"] == near_ahead
        assert near["data"]["sms"]["to"] == "+51987654321"
        text = near["data"]["sms"]["text"]
        assert number in text and f"{near_ahead} ahead" in text and "आपसे पहले" in text, text
        assert (await api.get(sms_path, key=None))[1]["sms"]["near_sent"] is True
        # Called: the SMS says where to go, in both languages.
        while current["number"] != taken["token"]["number"]:
            await api.act(current, "start")
            await api.act(current, "complete")
            current = await api.next(counter)
        await wait_until_async(lambda: asyncio.sleep(0, [d for d in receiver.verified(secret)
                                                         if d["type"] == "token.called" and d["data"].get("sms")]),
                               done=bool, what="the called SMS", timeout=5)
        await api.act(current, "start")
        await api.act(current, "complete")
        called = next(d for d in receiver.verified(secret) if d["type"] == "token.called" and d["data"].get("sms"))
        assert called["data"]["token"]["number"] == number
        label = scenario.counters[counter].label
        assert label in called["data"]["sms"]["text"] and "कृपया" in called["data"]["sms"]["text"]
        # Served: the request and the number in it are erased.
        await wait_until_async(lambda: api.get(sms_path, key=None), done=lambda answer: answer[1]["sms"] is None,
                               what="the request erased once the token ended", timeout=8)
        assert await client.app[STORE].sms_requests() == []
    finally:
        await receiver.stop()
    assert "987654321" not in caplog.text and "987 654 321" not in caplog.text


async def test_asking_when_the_turn_is_already_near_sends_at_once(tmp_path: Path, aiohttp_client):
    scenario = replace(load_scenario(LAKESIDE), webhooks=WebhooksConfig(retry_first_s=0.05, retry_max_s=0.2))
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                      clock=Clock(time.time()), rate_limit_per_s=0,
                                                      write_admin_key=False)))
    admin, _ = await client.app[KEYS].create("admin")
    api = Api(client=client, admin=admin, board=admin)
    receiver = Receiver()
    await receiver.start()
    try:
        await register(api, receiver.url, ["token.near", "token.called"])
        sid, service, _ = busy_hall(scenario)
        status, taken = await api.post(f"/api/v1/public/substations/{sid}/tokens", key=None, json={
            "service": service, "account": "2140000043", "phone": "+51 987 654 322"})
        started = time.monotonic()
        status, _ = await api.post(f"/api/v1/public/tokens/{taken['url'].rsplit('/', 1)[1]}/sms", key=None,
                                   json={"mobile": "+51 987 654 322"})
        assert status == 201
        await wait_until_async(lambda: asyncio.sleep(0, len(receiver.got)), done=bool,
                               what="the near SMS of a token first in line", timeout=2)
        assert time.monotonic() - started < 2                   # not at the next sweep (5 s)
    finally:
        await receiver.stop()
