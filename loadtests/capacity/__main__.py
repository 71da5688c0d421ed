"""``python -m loadtests.capacity``: the same as ``peak-sim``, before the console script exists."""

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process imports this module again
    raise SystemExit(main())
