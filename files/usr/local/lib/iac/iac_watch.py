#!/usr/bin/python3
"""iac-watch: certificates, disks and backups, each condition told once through the alert webhook.

The launcher of the package watch_engine/ beside it (its commands: watch_engine/cli.py)."""
# Managed by this repo (files/usr/local/lib/iac/iac_watch.py). Run by iac-watch.service.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from watch_engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
