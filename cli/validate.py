"""Validate the production inventory offline: load inventory.py and its group_data, contact nobody.

Exit 0 when valid; 1 with the operator-facing message otherwise.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from iac.errors import ConfigError
from iac.repo import REPO


def load_inventory(path: Path) -> dict[str, list]:
    """The groups an inventory file defines, as pyinfra would read them (nothing connects)."""
    values = runpy.run_path(str(path))
    return {k: v for k, v in values.items() if not k.startswith("_") and isinstance(v, list)}


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("validate takes no arguments (it reads inventory.py offline)", file=sys.stderr)
        return 1
    try:
        groups = load_inventory(REPO / "inventory.py")
    except ConfigError as exc:
        print(f"inventory.py: {exc}", file=sys.stderr)
        return 1
    for group, hosts in groups.items():
        for name, data in hosts:
            print(f"valid: {group}/{name} (connects as {data.get('ssh_user')}@{data['ssh_hostname']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
