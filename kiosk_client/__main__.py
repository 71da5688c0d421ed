"""``python -m kiosk_client``: the same as ``kiosk``."""

import sys

from .cli import main

sys.exit(main())
