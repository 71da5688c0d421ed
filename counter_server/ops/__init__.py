"""Ops: the live page of all counters, daily and monthly reports, Prometheus metrics, logs."""
