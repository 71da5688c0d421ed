"""Cash counter queue and load management service for an electricity utility's counters."""

__version__ = "0.1.0"
