"""`python -m envoy2mqtt` is the `envoy2mqtt` command."""

import sys

from .cli import main

sys.exit(main())
