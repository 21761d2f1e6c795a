"""`python -m envoy2mqtt.simulator [CAPTURE_DIR] [--profile ...] [--live] ...`"""

from __future__ import annotations

import sys

from envoy2mqtt.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
