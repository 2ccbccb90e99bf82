#!/usr/bin/python3
"""Release engine: make an app's declared revision live, or do nothing if it already is.

The launcher of the package release_engine/ beside it (its commands: release_engine/cli.py)."""
# Managed by this repo (files/usr/local/lib/iac/iac_release.py): the launcher of the package
# release_engine/ beside it (every caller, the fact batch's runner included, calls this file).

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from release_engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
