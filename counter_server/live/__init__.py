"""Live boards: a broadcast hub of per-substation snapshots and ordered deltas over WebSockets."""

from .hub import OPS_CHANNEL, SCHEMA_VERSION, LiveHub, Subscriber

__all__ = ["OPS_CHANNEL", "SCHEMA_VERSION", "LiveHub", "Subscriber"]
