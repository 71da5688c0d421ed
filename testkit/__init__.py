"""What the tests, the benchmarks and the reliability suite share to drive a real server.

Nothing here is a pytest fixture (those stay in ``tests/conftest.py``), so a benchmark or
``python -m loadtests.reliability`` runs from any directory once the project is installed:

* ``testkit.scenarios``: the test scenario files and the scenario facts tests read;
* ``testkit.processes``: counter-server, billing-sim and redis-server as child processes, and
  the ``counter-server`` command line run once;
* ``testkit.waiting``: ``wait_until``, the one bounded wait;
* ``testkit.live``: reading a live channel until the message that matters;
* ``testkit.api``: an in-process test client with one key per role, and a clock moved by hand;
* ``testkit.browser``: the Chromium page tests drive;
* ``testkit.figures``: the one-table report benchmarks and the reliability suite print.
"""
