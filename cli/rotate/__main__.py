"""python -m cli.rotate: see cli/rotate/__init__.py."""

import sys

from cli.rotate import main

if __name__ == "__main__":
    sys.exit(main())
