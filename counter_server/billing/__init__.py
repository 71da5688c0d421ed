"""The gateway to the billing server: durable outbox, adaptive limit, breaker, bill cache;
plus ``billing-sim``, a simulated fragile billing server."""
