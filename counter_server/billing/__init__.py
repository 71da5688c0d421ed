"""The gateway to the billing server: it forwards the payment outbox under an adaptive limit and
a circuit breaker, and caches bill look-ups; plus ``billing-sim``, a simulated fragile billing
server."""
