"""HTTP handlers: validate, authorise, call a service, shape JSON. Nothing else lives here."""

from .routes import setup_routes

__all__ = ["setup_routes"]
