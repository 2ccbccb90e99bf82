"""`make apply`: the preview first (what would change, per resource, with the Plan: line), then
the apply. On production it asks before changing anything (CONFIRM=yes / --yes skips the question,
for a pipeline that has shown the preview to a person already).

Usage: python -m cli.apply INVENTORY [--limit HOST] [--yes]
Exit codes: 0 applied (or nothing to apply), 1 refused, not confirmed, or the apply failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from cli.drift import plan, report
from cli.validate import load_inventory
from iac import piped
from iac.errors import ConfigError
from iac.repo import REPO
from stack.load import config_secret_values


def confirmed(production: bool, assume_yes: bool, ask=input, interactive: bool | None = None) -> bool:
    """Whether to go on: always outside production; there, --yes or the word typed at a terminal."""
    if not production or assume_yes:
        return True
    if not (sys.stdin.isatty() if interactive is None else interactive):
        print("apply: production needs a person to confirm at a terminal, or CONFIRM=yes", file=sys.stderr)
        return False
    return ask("Apply these changes to PRODUCTION? Type 'apply' to go on: ").strip() == "apply"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.apply", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--limit", help="only these hosts or groups (pyinfra --limit)")
    parser.add_argument("--yes", action="store_true", help="do not ask on production")
    args = parser.parse_args(argv)
    try:
        groups = load_inventory(Path(args.inventory))
    except ConfigError as exc:
        print(f"apply: {exc}", file=sys.stderr)
        return 1
    entries = [data for hosts in groups.values() for _, data in hosts]
    secrets = [v for data in entries for v in config_secret_values(data["config"])]
    production = any(data.get("stack") == "production" for data in entries)
    limit = ["--limit", args.limit] if args.limit else []
    code, data, stderr = plan(args.inventory, extra_args=limit or None)
    preview = report(args.inventory, code, data, stderr, secrets)
    if preview.status == "error":
        print(f"apply: no preview, nothing applied: {preview.error}", file=sys.stderr)
        return 1
    print(preview.text())
    if preview.status == "in_sync":
        print("apply: nothing to change")
        return 0
    if not confirmed(production, args.yes):
        print("apply: not confirmed; nothing applied", file=sys.stderr)
        return 1
    env, fds, started = piped.child_env({k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
    proc = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), args.inventory, "deploy.py", *limit, "-y"], cwd=REPO,
                            env=env, pass_fds=fds)
    started()
    proc.wait()
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
