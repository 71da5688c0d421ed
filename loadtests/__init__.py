"""Load tests (locust) and the peak-load simulations."""
