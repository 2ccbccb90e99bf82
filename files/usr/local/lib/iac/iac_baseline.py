#!/usr/bin/python3
"""iac-baseline: the whole host held against Debian's packages and this repository's declaration.

The launcher of the package baseline_engine/ beside it (its commands: baseline_engine/cli.py)."""
# Managed by this repo (files/usr/local/lib/iac/iac_baseline.py). Every caller (the drift
# check's fact batch, the converge's repair) runs this file.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from baseline_engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
