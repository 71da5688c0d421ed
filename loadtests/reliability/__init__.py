"""The reliability and security suite: crash, fault and bad-input runs that print figures.

``python -m loadtests.reliability [--rounds N] [--bad-inputs N] [--soak-s S]`` runs it all and
prints one table; tests/test_reliability*.py run a bounded version of each part.
"""
