#!/usr/bin/python3
"""iac-backup: the host side of the backups declared in the repo's model (BackupsSection).

The launcher of the package backup_engine/ beside it (its commands: backup_engine/cli.py)."""
# Managed by this repo (files/usr/local/lib/iac/iac_backup.py). Every caller (the backup units,
# iac-backup, the release engine, the fact batch's runner) runs this file.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup_engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
