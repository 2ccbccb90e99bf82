"""``python -m sandbox.world ...``: the sandbox's command line (sandbox/world/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
