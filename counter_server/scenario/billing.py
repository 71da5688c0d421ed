"""The knobs of the scenario's ``[billing]`` table: how gently the gateway treats the billing
server, and how fragile the simulated one is. Plain dataclasses, so reading the configuration
never pulls in the gateway's HTTP client, the store or the simulator's web server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatewaySettings:
    max_concurrency: int = 16      # the ceiling the adaptive limit never passes
    initial_limit: int = 4
    timeout_s: float = 2.0
    lease_s: float = 30.0
    poll_s: float = 0.25
    bill_ttl_s: float = 60.0
    breaker_failures: int = 5
    breaker_open_s: float = 1.0
    retry_base_s: float = 0.2
    retry_cap_s: float = 10.0


@dataclass(frozen=True)
class SimSettings:
    capacity: int = 8
    knee: int = 4
    base_latency_ms: float = 40.0
    overload_s: float = 2.0
    recovery_s: float = 5.0
