"""`make secrets-template`: a skeleton of every secret the declared configuration needs, for all
groups at once: the JSON shape the secrets file (IAC_SECRETS_FILE) takes, each value empty.

Fill in each value (a required one left empty stops a run, naming it), delete what you will not
use among the optional ones, and keep the file outside the repository (docs/secrets.md).
``--format text`` lists the same paths with "required" or "optional".

Usage: python -m cli.secrets_template [--format json|text]
Exit codes: 0 written to stdout, 1 the configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.validate import load_inventory
from iac import sudo
from iac.errors import ConfigError
from iac.repo import REPO
from stack.load import GROUPS, secret_needs


def sudo_groups() -> list[str]:
    """The groups production reaches through sudo (inventory.py, read offline): each needs its sudo
    password (optional in the file: it can be typed at a terminal instead; CI needs it there)."""
    groups = load_inventory(REPO / "inventory.py")
    return [g for g, entries in groups.items() if any(data.get("_sudo") for _, data in entries)]


def skeleton() -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """({group: nested paths -> ""}, [(dotted path, "required" | "optional ...")])."""
    out: dict[str, Any] = {}
    listed: list[tuple[str, str]] = []
    through_sudo = sudo_groups()
    for group in GROUPS:
        wanted, required = secret_needs(group)
        node_root: dict[str, Any] = out.setdefault(group, {})
        extra = [sudo.SECRET_PATH] if group in through_sudo else []
        for path in [*wanted, *extra]:
            if path[-1] == "*":  # a map of secrets, keyed by the app's own names: listed, not in the skeleton
                if path[-2] == "secret_key_fallbacks":  # keyed by when each stops (make rotate-django-key)
                    listed.append((f"{group}.{'.'.join(path[:-1])}.<UNTIL>",
                                   "optional: older keys, each until a UTC time (make rotate-django-key keeps them)"))
                else:
                    listed.append((f"{group}.{'.'.join(path[:-1])}.<NAME>", "optional: one entry per variable"))
                continue
            node = node_root
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = ""
            kind = ("required" if path in required else
                    "optional: else typed at a terminal (CI needs it)" if path in extra else "optional")
            listed.append((f"{group}.{'.'.join(path)}", kind))
    return out, listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.secrets_template", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=["json", "text"], default="json")
    args = parser.parse_args(argv)
    try:
        tree, listed = skeleton()
    except ConfigError as e:
        print(f"secrets-template: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(tree, indent=2))
    else:
        width = max(len(p) for p, _ in listed)
        print("\n".join(f"{p:<{width}}  {k}" for p, k in listed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
