"""Every error is JSON: {"error": {"code", "message", ...details}} with the right status."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..appkeys import SETTINGS
from ..billing.gateway import BillingUnavailable, BillNotFound
from ..queueing import (
    CannotServeToday,
    CounterBusy,
    DomainError,
    IllegalMove,
    LeaseRefused,
    TransferRejected,
    UnknownToken,
)
from ..services import Forbidden, InvalidField, NotFound, ServiceError
from ..services.errors import AlreadyPaid
from ..services.payments import PaymentNotFailed, TokenNotAtCounter
from ..services.sms import SmsUnavailable
from ..webhooks.endpoints import UrlRefused
from ..store import STORE_UNAVAILABLE, IdempotencyConflict

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer raised from a handler or middleware."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 /, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers, **self.details)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   /, **details: object) -> web.Response:
    body = {"error": {"code": code, "message": message, **details}}
    return web.json_response(body, status=status, headers=headers)


_DOMAIN_STATUS: dict[type[DomainError], int] = {
    UnknownToken: 404,
    IllegalMove: 409,
    CounterBusy: 409,
    CannotServeToday: 409,
    LeaseRefused: 409,
    TransferRejected: 422,
}

_SERVICE_STATUS: dict[type[ServiceError], int] = {
    TokenNotAtCounter: 409,
    AlreadyPaid: 409,
    PaymentNotFailed: 409,
    SmsUnavailable: 409,
    UrlRefused: 409,
    NotFound: 404,
    Forbidden: 403,
    InvalidField: 422,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def as_api_error(exc: Exception) -> ApiError | None:
    """The API answer for a known exception from the layers below, or None."""
    if isinstance(exc, DomainError):
        status = next((s for cls, s in _DOMAIN_STATUS.items() if isinstance(exc, cls)), 409)
        return ApiError(status, exc.code, exc.message, **exc.details())
    if isinstance(exc, ServiceError):
        status = next((s for cls, s in _SERVICE_STATUS.items() if isinstance(exc, cls)), 400)
        return ApiError(status, exc.code, exc.message, **exc.details)
    if isinstance(exc, IdempotencyConflict):
        return ApiError(422, "idempotency_key_reused", str(exc))
    if isinstance(exc, BillNotFound):
        return ApiError(404, "bill_not_found", str(exc), account=exc.account)
    if isinstance(exc, BillingUnavailable):
        retry = max(1, math.ceil(exc.retry_after_s))
        return ApiError(503, "billing_unavailable", f"The billing server cannot answer now ({exc}).",
                        {"Retry-After": str(retry)}, retry_after_s=retry)
    if isinstance(exc, STORE_UNAVAILABLE):
        retry = max(1, math.ceil(getattr(exc, "retry_after_s", 1.0)))
        return ApiError(503, "store_unavailable",
                        f"The queue's store cannot answer now ({exc}); nothing was acknowledged. "
                        "Retry with the same Idempotency-Key.",
                        {"Retry-After": str(retry)}, retry_after_s=retry)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 404:
            message = f"No route {request.method} {request.path}."
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}."
        elif exc.status == 413:
            limit = request.app[SETTINGS].max_body_bytes
            message = f"The request body is larger than the limit of {limit} bytes."
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, message, headers)
    except Exception as exc:  # noqa: BLE001 - nothing may escape as a bare 500 page
        known = as_api_error(exc)
        if known is not None:
            return known.response()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            500, "internal_error",
            "The server failed to answer; retry with the same Idempotency-Key to learn the outcome.",
        )
