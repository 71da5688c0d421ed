"""Application services: the use cases the API calls, between the handlers and the store."""

from .access import Actor, Forbidden, Role
from .errors import InvalidField, NotFound, ServiceError
from .keys import KeyService
from .tokens import TokenService

__all__ = [
    "Actor",
    "Forbidden",
    "InvalidField",
    "KeyService",
    "NotFound",
    "Role",
    "ServiceError",
    "TokenService",
]
