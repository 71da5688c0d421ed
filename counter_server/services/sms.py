"""A consumer asks, from the phone page, for an SMS when their token is near and when called.

Offered only while the utility has endpoints taking ``token.near`` and ``token.called`` notices
(its SMS or WhatsApp gateway), so the page never promises a message nobody would send. The number is
kept with the request alone and erased when the token ends (webhooks/sms.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import PhonesConfig
from ..notices import TOKEN_CALLED, TOKEN_NEAR, SmsRequest
from ..store import Store
from .errors import InvalidField, ServiceError
from .phones import PhoneService


class SmsUnavailable(ServiceError):
    code = "sms_unavailable"


def mobile_number(mobile: object) -> str:
    """A mobile number as gateways take it: a leading + kept, spaces and dashes dropped."""
    if not isinstance(mobile, str):
        raise InvalidField("mobile", "Give your mobile number, e.g. +91 98765 43210.")
    kept = mobile.strip()
    digits = "".join(ch for ch in kept if ch.isascii() and ch.isdigit())
    if any(not (ch.isascii() and (ch.isdigit() or ch in " -().+")) for ch in kept) or not 10 <= len(digits) <= 15:
        raise InvalidField("mobile", f"{mobile!r} is not a mobile number: give 10 to 15 digits, e.g. +91 98765 43210.")
    return ("+" if kept.startswith("+") else "") + digits


def hint(mobile: str) -> str:
    """What the page shows of the number: its last four digits."""
    return "•••• " + mobile[-4:]


class SmsService:
    def __init__(self, phones: PhoneService, store: Store, config: PhonesConfig,
                 clock: Callable[[], float] = time.time,
                 on_asked: Callable[[str, str], None] = lambda substation, day: None) -> None:
        """``on_asked(substation, day)``: someone there asked (their turn may be near already)."""
        self.phones = phones
        self.store = store
        self.config = config
        self.clock = clock
        self.on_asked = on_asked

    async def offered(self) -> bool:
        """Whether enabled endpoints take both ``token.near`` and ``token.called``: the page
        promises both messages (a few rows: read each time asked)."""
        taken = {kind for h in await self.store.webhooks() if h.disabled_at is None for kind in h.events}
        return {TOKEN_NEAR, TOKEN_CALLED} <= taken

    async def ask(self, link: str, mobile: object) -> SmsRequest:
        number = mobile_number(mobile)
        token, _ = await self.phones.view(link)
        if not token.active:
            raise InvalidField("token", f"Token {token.number} has ended; there is nothing to send.")
        if not await self.offered():
            raise SmsUnavailable("Messages by SMS are not sent here at the moment; keep this page open instead.")
        request = SmsRequest(token.id, token.substation, token.day, number, self.config.sms_near_ahead,
                             float(self.config.sms_near_minutes), self.clock())
        await self.store.put_sms_request(request)
        self.on_asked(token.substation, token.day)
        return request

    async def stop(self, link: str) -> None:
        token, _ = await self.phones.view(link)
        await self.store.forget_sms_requests([token.id])

    async def of(self, link: str) -> SmsRequest | None:
        token, _ = await self.phones.view(link)
        return await self.store.sms_request(token.id)
