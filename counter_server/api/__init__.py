"""HTTP and WebSocket handlers: validate, authorise, call a service, shape JSON. Nothing else
lives here; the route table that names them is ``counter_server/routes.py``."""
