"""Signed webhooks (Standard Webhooks): endpoints ops register, and the delivery of notices."""

from .delivery import WebhookDeliverer, message_body, sign
from .endpoints import WebhookService, check_secret, check_url

__all__ = ["WebhookDeliverer", "WebhookService", "check_secret", "check_url", "message_body", "sign"]
