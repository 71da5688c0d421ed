"""What a copied data dir gives away, and what the phone limits reveal to a stranger.

Through a real server over a real SQLite file: the account and phone digests are keyed with a
key derived from the server's secret (kept outside the database), so brute force over the
10-digit phone numbers finds nothing in a copied counter.db; the data dir and its files are
for the server's user only; and the limits per account and phone count one account however
it is spelled, refuse made-up accounts, cap an account across the city and answer a holding
check in the same words (and about the same time) whatever matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from counter_server.app import create_app
from counter_server.appkeys import SETTINGS
from counter_server.billing.simulator import SimSettings, create_sim_app
from counter_server.config import Scenario, Settings, load_scenario
from counter_server.queueing import AlreadyHolding, Holder, Priority, Status, Token
from counter_server.services.phones import HolderDigests, account_number, holding_refusal

from testkit.api import Api, Clock

ACCOUNT = "KAN-20431877"
PHONE = "9876543210"


def old_digest(kind: str, value: str) -> str:
    """The digest the server kept before: unkeyed SHA-256, 24 hex digits."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:24]


def stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("counter.db*")))


def service_at(scenario: Scenario, sid: str) -> str:
    """A service this substation offers: the paid one where it has it, else its first."""
    services = scenario.substations[sid].services
    return scenario.payment_service if scenario.payment_service in services else services[0]


async def take(api: Api, sid: str, account: str, phone: str) -> tuple[int, Any]:
    scenario = api.client.app[SETTINGS].scenario
    return await api.post(f"/api/v1/public/substations/{sid}/tokens", key=None,
                          json={"service": service_at(scenario, sid), "account": account, "phone": phone})


def roomy(scenario: Scenario, **phones: Any) -> Scenario:
    return replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=100_000, **phones))


async def start(aiohttp_client, data_dir: Path, scenario: Scenario, clock: Clock) -> Api:
    settings = Settings(data_dir=data_dir, scenario=scenario, clock=clock, rate_limit_per_s=0)
    client = await aiohttp_client(create_app(settings))
    return Api(client=client, admin=(data_dir / "admin.key").read_text().strip())


# ---- item 3: a copied database alone reveals nothing ---------------------------------------

async def test_a_copied_database_gives_no_phone_or_account_back(aiohttp_client, tmp_path: Path,
                                                                scenario: Scenario, clock: Clock):
    data = tmp_path / "data"
    api = await start(aiohttp_client, data, roomy(scenario), clock)
    sid = next(iter(scenario.substations))
    status, body = await take(api, sid, ACCOUNT, f"+91 {PHONE[:5]} {PHONE[5:]}")
    assert status == 201, body
    await api.client.close()
    copied = tmp_path / "copied.db"   # what a thief takes: the database, not the secret beside it
    copied.write_bytes((data / "counter.db").read_bytes())
    stored = stored_bytes(data)
    with sqlite3.connect(copied) as db:
        ((phone_ref, account_ref, hint),) = db.execute(
            "SELECT phone_ref, account_ref, account_hint FROM tokens WHERE phone_ref IS NOT NULL")
    # Neither number in clear, nor under the old unkeyed digest, anywhere in the files.
    for plain in (PHONE, ACCOUNT, account_number(ACCOUNT), ACCOUNT[-8:]):
        assert plain.encode() not in stored
    for old in (old_digest("phone", PHONE), old_digest("account", ACCOUNT), old_digest("account", "KAN20431877")):
        assert old.encode() not in stored
    assert hint == "1877"   # the page's "••••1877": the last four, kept in clear on purpose
    # Brute force with five digits unknown (100,000 tries): the old scheme finds the number,
    # the stored digest matches no candidate under it, nor under a key made without the secret.
    prefix = PHONE[:5]
    candidates = [f"{prefix}{n:05d}" for n in range(100_000)]
    started = time.perf_counter()
    old_hits = [c for c in candidates if old_digest("phone", c) == old_digest("phone", PHONE)]
    brute_s = time.perf_counter() - started
    assert old_hits == [PHONE] and brute_s < 5
    assert not [c for c in candidates if old_digest("phone", c) == phone_ref]
    guessed = HolderDigests(b"\0" * 32)   # a guess at the key: no better than any other
    assert guessed.digest("phone", PHONE) != phone_ref
    # With the server's secret (the file beside the database, 0600, never inside it) it matches:
    # that file, not the database, is what an attacker would need.
    secret = bytes.fromhex((data / "server.secret").read_text().strip())
    assert (data / "server.secret").read_text().strip().encode() not in stored
    keyed = HolderDigests.from_secret(secret)
    assert (keyed.digest("phone", PHONE), keyed.digest("account", "KAN20431877")) == (phone_ref, account_ref)
    key = hmac.new(secret, b"holder-digest", hashlib.sha256).digest()
    assert hmac.new(key, f"phone:{PHONE}".encode(), hashlib.sha256).hexdigest()[:24] == phone_ref
    links_key_digest = hmac.new(secret, f"phone:{PHONE}".encode(), hashlib.sha256).hexdigest()[:24]
    assert links_key_digest != phone_ref   # a key of its own, not the secret itself


async def test_digests_an_older_version_wrote_are_blanked_once(aiohttp_client, tmp_path: Path,
                                                                 scenario: Scenario, clock: Clock):
    """A data dir written before the digests were keyed: its unkeyed digests leave the files on
    the first start. The price, said in docs/security.md: that day, such a holder may take a second
    token (nothing left to match it by)."""
    data = tmp_path / "data"
    api = await start(aiohttp_client, data, roomy(scenario), clock)
    sid = next(iter(scenario.substations))
    assert (await take(api, sid, ACCOUNT, PHONE))[0] == 201
    await api.client.close()
    old_phone, old_account = old_digest("phone", PHONE), old_digest("account", ACCOUNT)
    with sqlite3.connect(data / "counter.db") as db:   # as the older version left it
        db.execute("DROP TABLE store_meta")
        db.execute("UPDATE tokens SET phone_ref = ?, account_ref = ? WHERE phone_ref IS NOT NULL",
                   [old_phone, old_account])
        db.execute("UPDATE events SET data = json_set(data, '$.phone_ref', ?, '$.account_ref', ?)"
                   " WHERE token_id IS NOT NULL", [old_phone, old_account])
    assert old_phone.encode() in stored_bytes(data)
    api = await start(aiohttp_client, data, roomy(scenario), clock)
    assert (await take(api, sid, ACCOUNT, PHONE))[0] == 201   # the old token matches nothing now
    await api.client.close()
    stored = stored_bytes(data)
    assert old_phone.encode() not in stored and old_account.encode() not in stored
    api = await start(aiohttp_client, data, roomy(scenario), clock)   # once: keyed digests stay
    assert (await take(api, sid, "KAN-00000042", PHONE))[0] == 409
    await api.client.close()
    with sqlite3.connect(data / "counter.db") as db:
        refs = db.execute("SELECT phone_ref FROM tokens ORDER BY issued_at, ordinal").fetchall()
    assert refs[0] == (None,) and refs[1][0] is not None   # the new token is keyed and kept


def modes(data: Path) -> dict[str, int]:
    found = {"<dir>": data.stat().st_mode & 0o777}
    for name in ("counter.db", "counter.db-wal", "counter.db-shm", "server.secret", "admin.key"):
        if (data / name).exists():
            found[name] = (data / name).stat().st_mode & 0o777
    return found


async def test_the_data_dir_and_its_files_are_for_the_servers_user_only(aiohttp_client, tmp_path: Path,
                                                                        scenario: Scenario, clock: Clock):
    old_umask = os.umask(0o022)   # the usual umask: files 0644, dirs 0755 unless made private
    try:
        data = tmp_path / "data"
        api = await start(aiohttp_client, data, roomy(scenario), clock)
        sid = next(iter(scenario.substations))
        assert (await take(api, sid, ACCOUNT, PHONE))[0] == 201
        running = modes(data)   # while serving: the WAL and shared-memory files exist
        assert set(running) == {"<dir>", "counter.db", "counter.db-wal", "counter.db-shm", "server.secret",
                                "admin.key"}
        assert running == {name: 0o700 if name == "<dir>" else 0o600 for name in running}
        await api.client.close()
        # A data dir an older version left readable to all is made private on the next start.
        os.chmod(data, 0o755)
        for path in data.iterdir():
            os.chmod(path, 0o644)
        api = await start(aiohttp_client, data, roomy(scenario), clock)
        assert (await take(api, sid, "KAN-00000042", "9811111111"))[0] == 201
        tightened = modes(data)
        assert tightened == {name: 0o700 if name == "<dir>" else 0o600 for name in tightened}
        assert {"counter.db", "server.secret", "admin.key"} <= set(tightened)
    finally:
        os.umask(old_umask)


# ---- item 5: the limits stop people and tell strangers nothing -----------------------------

@pytest.fixture
async def any_api(aiohttp_client, tmp_path: Path, scenario_file: Path, clock: Clock) -> Api:
    """The phone API on each scenario in turn."""
    return await start(aiohttp_client, tmp_path / "data", roomy(load_scenario(scenario_file)), clock)


async def test_one_account_however_it_is_spelled_and_made_up_accounts_refused(any_api: Api):
    scenario = any_api.client.app[SETTINGS].scenario
    sid = next(iter(scenario.substations))
    status, first = await take(any_api, sid, "KAN-2043-1877", "9811100001")
    assert status == 201 and first["account_check"] == "verified" and first["token"]["account"] == "••••1877"
    for spelling in ("KAN20431877", "kan-20431877", "Kan2043-1877"):   # same account: one holder
        status, again = await take(any_api, sid, spelling, "9811100002")
        assert status == 409 and again["error"]["code"] == "already_holding", (spelling, again)
    for made_up in ("AAAA-1", "AAAA1", "ZZZZ9999", "1234567890", "KAN-1"):   # billing knows none
        status, refused = await take(any_api, sid, made_up, "9811100003")
        assert status == 422 and refused["error"]["field"] == "account", (made_up, refused)
    status, refused = await take(any_api, sid, "----", "9811100003")
    assert status == 422 and refused["error"]["field"] == "account"


async def test_the_simulated_billing_server_knows_only_its_consumers(aiohttp_client):
    client = await aiohttp_client(create_sim_app(SimSettings(base_latency_ms=1)))
    for known in ("KAN-20431877", "KAN20431877", "kan-2043-1877", "2140012345"):
        assert (await client.get(f"/bills/{known}")).status == 200, known
    for unknown in ("AAAA-1", "AAAA1", "ZZZZ9999", "1234", "NA-00000001", "KAN-2043187"):
        assert (await client.get(f"/bills/{unknown}")).status == 404, unknown
    one = await (await client.get("/bills/KAN-20431877")).json()
    other = await (await client.get("/bills/KAN20431877")).json()
    assert one["amount_paise"] == other["amount_paise"]   # one consumer, one bill


async def test_an_account_holds_one_token_across_the_city(any_api: Api):
    scenario = any_api.client.app[SETTINGS].scenario
    first, *others = list(scenario.substations)
    assert others, "the scenario needs two substations"
    status, mine = await take(any_api, first, ACCOUNT, PHONE)
    assert status == 201
    for n, sid in enumerate(others):   # a new phone each time: only the account is the same
        status, body = await take(any_api, sid, ACCOUNT, f"98222{n:05d}")
        assert status == 409 and body["error"]["code"] == "already_holding" and "token" not in body["error"]
        status, body = await take(any_api, sid, ACCOUNT, PHONE)   # both numbers: the link comes back
        assert status == 409 and body["error"]["token"] == mine["token"]["link"]
    # Another account on the same phone may queue at another substation (one phone, one family).
    assert (await take(any_api, others[0], "KAN-55500001", PHONE))[0] == 201
    assert (await any_api.post(f"/api/v1/public/tokens/{mine['token']['link']}/cancel", key=None))[0] == 200
    assert (await take(any_api, others[-1], ACCOUNT, "9833300000"))[0] == 201   # freed: anywhere


async def test_the_city_cap_is_a_scenario_knob(aiohttp_client, tmp_path: Path, scenario: Scenario,
                                               clock: Clock):
    api = await start(aiohttp_client, tmp_path / "data", roomy(scenario, tokens_per_account_city=2), clock)
    sids = list(scenario.substations)
    answers = [(await take(api, sid, ACCOUNT, f"98444{n:05d}"))[0] for n, sid in enumerate(sids[:3])]
    assert answers == [201, 201, 409]


async def test_a_holding_check_tells_a_stranger_nothing(any_api: Api):
    """The same refusal whether the account, the phone or both match, the link only for
    both, and no kind of match answered much sooner than another."""
    scenario = any_api.client.app[SETTINGS].scenario
    sid, *_ = list(scenario.substations)
    status, mine = await take(any_api, sid, ACCOUNT, PHONE)
    assert status == 201
    kinds = {"account": (ACCOUNT, "9855500000"), "phone": ("KAN-77700001", PHONE), "both": (ACCOUNT, PHONE)}
    answers = {kind: await take(any_api, sid, *numbers) for kind, numbers in kinds.items()}
    assert {status for status, _ in answers.values()} == {409}
    errors = {kind: body["error"] for kind, (_, body) in answers.items()}
    assert errors["both"].pop("token") == mine["token"]["link"]
    assert errors["account"] == errors["phone"] == errors["both"]   # word for word
    # Timing: interleaved rounds of each kind; the medians stay within a few milliseconds.
    took: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(25):
        for kind, numbers in kinds.items():
            started = time.perf_counter()
            assert (await take(any_api, sid, *numbers))[0] == 409
            took[kind].append(time.perf_counter() - started)
    medians = {kind: statistics.median(t) for kind, t in took.items()}
    spread = max(medians.values()) - min(medians.values())
    assert spread < max(0.003, 0.5 * min(medians.values())), medians


def token(tid: str, sid: str, account_ref: str, phone_ref: str, status: Status = Status.WAITING) -> Token:
    return Token(id=tid, substation=sid, day="2026-11-27", service="s", number="B-001", seq=1,
                 priority=Priority.NORMAL, status=status, issued_at=0.0, account_ref=account_ref,
                 phone_ref=phone_ref)


def test_the_holding_decision():
    me = Holder("acct", "phone", "1877")
    nothing: dict[str, list[Token]] = {"A": [], "B": []}
    assert holding_refusal(me, "A", nothing, 1) is None
    at_b = {"A": [], "B": [token("t1", "B", "acct", "other")]}
    refused = holding_refusal(me, "A", at_b, 1)
    assert isinstance(refused, AlreadyHolding) and not refused.same_holder
    assert holding_refusal(me, "A", at_b, 2) is None            # the cap allows two
    phone_here = {"A": [token("t2", "A", "someone", "phone")], "B": []}
    refused = holding_refusal(me, "A", phone_here, 5)            # the phone: per substation
    assert refused is not None and not refused.same_holder and refused.token.id == "t2"
    assert holding_refusal(me, "B", phone_here, 5) is None
    both_elsewhere = {"A": [token("t3", "A", "someone", "phone")], "B": [token("t4", "B", "acct", "phone")]}
    refused = holding_refusal(me, "A", both_elsewhere, 1)
    assert refused is not None and refused.same_holder and refused.token.id == "t4"   # their own
    assert str(refused) == str(holding_refusal(me, "A", phone_here, 5))


def test_normalised_numbers():
    assert account_number("kan-2043 1877") == account_number("KAN20431877") == "KAN20431877"
    digests = HolderDigests(b"k" * 32)
    assert digests.holder("KAN-20431877", "+91 98765 43210") == digests.holder("kan20431877", "09876543210")
    assert digests.holder("KAN-20431877", PHONE).account_hint == "1877"
    with pytest.raises(ValueError):
        HolderDigests(b"short")


async def test_a_retried_phone_take_leaves_no_testable_digest_of_its_numbers(aiohttp_client, tmp_path: Path,
                                                                            scenario: Scenario, clock: Clock):
    """The Idempotency-Key record keeps a digest of the request, whose body holds both numbers:
    keyed, it lets nobody holding only the database test guesses of them."""
    data = tmp_path / "data"
    api = await start(aiohttp_client, data, roomy(scenario), clock)
    sid = next(iter(scenario.substations))
    path = f"/api/v1/public/substations/{sid}/tokens"
    body = {"service": service_at(scenario, sid), "account": ACCOUNT, "phone": PHONE}
    raw = json.dumps(body).encode()
    for _ in range(2):   # the retry replays the first answer
        async with api.client.post(path, data=raw, headers={"Idempotency-Key": "take-1",
                                                            "Content-Type": "application/json"}) as resp:
            assert resp.status == 201, await resp.text()
    await api.client.close()
    unkeyed = hashlib.sha256(f"POST {path}\n".encode() + raw).hexdigest()
    with sqlite3.connect(data / "counter.db") as db:
        (fingerprint,) = db.execute("SELECT fingerprint FROM idempotency WHERE key = 'take-1'").fetchone()
    assert fingerprint != unkeyed and unkeyed.encode() not in stored_bytes(data)
