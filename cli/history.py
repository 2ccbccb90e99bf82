"""`make history`: what changed each host, newest last: when, who, what, result, how long.

Every apply, release, rollback, restore and rebuild appends one line to the host's history
(/var/log/iac/history.jsonl, iac/host_run.py); this reads the last ``--lines`` of each host's.

Usage: python -m cli.history INVENTORY [--host NAME|GROUP] [--lines N] [--format text|json]
Exit codes: 0 read, 1 error (a host cannot be reached, no such host).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.validate import load_inventory
from iac.errors import ConfigError
from iac.host_run import read_history


def hosts(inventory: str, only: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(group, name, inventory entry) of every host, or of the host or group ``only``."""
    groups = load_inventory(Path(inventory))
    found = [(group, name, data) for group, entries in groups.items() for name, data in entries
             if only in (None, group, name)]
    if not found:
        known = ", ".join([*groups, *(n for entries in groups.values() for n, _ in entries)])
        raise ConfigError(f"{inventory}: no host or group {only!r} (known: {known})")
    return found


def text(records: list[dict[str, Any]]) -> str:
    if not records:
        return "  (nothing recorded yet)"
    lines = []
    for r in records:
        changed = r.get("changed") or []
        lines.append(f"  {r.get('when', '?'):<20} {str(r.get('who', '?'))[:20]:<20} {r.get('result', '?'):<11} "
                     f"{r.get('seconds', 0):>7}s  {r.get('what', '?')}"
                     + (f"  ({len(changed)} changed)" if changed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--host", help="one host or group (default: all)")
    parser.add_argument("--lines", type=int, default=20, help="the last N records per host (default 20)")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    try:
        found = {name: read_history(data, args.lines) for _, name, data in hosts(args.inventory, args.host)}
    except ConfigError as e:
        print(f"history: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"hosts": found}, indent=2))
    else:
        print("\n".join(f"{name}:\n{text(records)}" for name, records in found.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
