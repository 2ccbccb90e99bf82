"""`make pins` / `make unpin APP=x`: the revisions `make release` pinned, and how to drop one.

`make release` writes the commit it released where the stack keeps its values: a non-production
stack (the sandbox) in its own values file (``.sandbox/<name>/stack.json``), production in
group_data/<group>.py (one line, committed). A pin outlives the app's removal from group_data;
the inventory then refuses to load, naming the pin and this command.

Usage: python -m cli.pins INVENTORY list | unpin APP
Exit codes: 0 listed or removed, 1 no such pin, or production (its pins are group_data lines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.validate import load_inventory
from iac.errors import ConfigError
from operations.app.facts import COMMIT_RE
from stack.inventory import StalePin
from stack.load import GROUP_DATA, GROUPS, read_group_file, read_stack_values


def values_file(inventory: str) -> Path | None:
    """The stack's own values file, or None for production (whose pins are in group_data)."""
    try:
        groups = load_inventory(Path(inventory))
    except StalePin as stale:  # the inventory refuses to load because of a pin: that pin's file
        return stale.path
    for hosts in groups.values():
        for _, data in hosts:
            if data.get("stack_values"):
                return Path(data["stack_values"])
            if data.get("stack") == "production":
                return None
    return None


def pins(inventory: str) -> list[tuple[str, str, str, str]]:
    """(group, app, revision, where) of every pinned revision of the stack."""
    path = values_file(inventory)
    found = []
    if path is None:
        for group in GROUPS:
            for app, spec in (read_group_file(GROUP_DATA / f"{group}.py").get("apps") or {}).items():
                revision = (spec.get("source") or {}).get("revision", "") if isinstance(spec, dict) else ""
                if COMMIT_RE.match(str(revision)):
                    found.append((group, app, revision, f"group_data/{group}.py"))
        return found
    for group, values in read_stack_values(path).items():
        for app, spec in (values.get("apps") or {}).items() if isinstance(values, dict) else ():
            revision = ((spec or {}).get("source") or {}).get("revision") if isinstance(spec, dict) else None
            if revision:
                found.append((group, app, revision, str(path)))
    return found


def unpin(inventory: str, app: str) -> str:
    """Drop ``app``'s pin from the stack's values file; what was removed, for the operator."""
    path = values_file(inventory)
    if path is None:
        raise ConfigError(f"production keeps its pins in group_data: edit {app}'s `revision` line there back to "
                          "the branch or tag its comment names (`make release` wrote it), and commit")
    values = read_stack_values(path)
    removed = []
    for group, group_values in values.items():
        spec = (group_values.get("apps") or {}).get(app) if isinstance(group_values, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("source"), dict) and "revision" in spec["source"]:
            removed.append(f"{group}.apps.{app}.source.revision = {spec['source'].pop('revision')}")
            if not spec["source"]:
                spec.pop("source")
            if not spec:
                group_values["apps"].pop(app)
            if not group_values["apps"]:
                group_values.pop("apps")
    if not removed:
        known = ", ".join(a for _, a, _, _ in pins(inventory)) or "none"
        raise ConfigError(f"{path}: no pin of {app!r} (pinned: {known})")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({g: v for g, v in values.items() if v}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return f"{path}: removed {', '.join(removed)}; the app now follows group_data's revision"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.pins", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("unpin").add_argument("app")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "unpin":
            print(f"unpin: {unpin(args.inventory, args.app)}")
            return 0
        found = pins(args.inventory)
        for group, app, revision, where in found:
            print(f"{group}.apps.{app}: {revision}  ({where})")
        if not found:
            print("pins: none (every app follows group_data's revision)")
        return 0
    except ConfigError as exc:
        print(f"{'unpin' if args.cmd == 'unpin' else 'pins'}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
