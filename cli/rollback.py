"""`make rollback`: switch an app to a release kept on its host, without rebuilding.

The release engine on the host (``iac_release.py rollback``, files/usr/local/lib/iac/) picks the
release that was live before the current one (or the one whose commit starts with ``--to``),
reverses the migrations the older code does not know (refusing, with their names, when Django
cannot reverse one), or with ``--from-backup`` restores the backup taken before the current
release migrated. The older release is checked on a socket of its own before the switch.

The declared revision is not changed: drift reports the live release as differing from the
declared one until the stack's configuration says so (the command prints the line to set).

Usage: python -m cli.rollback INVENTORY APP [--to COMMIT] [--from-backup] [--yes]
Exit codes: 0 rolled back, 1 refused or failed (the current release stays live).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cli.backups import Target, app_answers
from cli.validate import load_inventory
from iac.errors import ConfigError
from iac.host_run import held
from operations.app.release import RELEASE_ENGINE


def find_app(inventory: str, app: str) -> Target:
    groups = load_inventory(Path(inventory))
    found = [Target(g, name, data) for g, hosts in groups.items() for name, data in hosts
             if app in data["config"].apps]
    if not found:
        known = sorted({a for hosts in groups.values() for _, d in hosts for a in d["config"].apps})
        raise ConfigError(f"APP={app!r} is not an app of {inventory}; known: {', '.join(known)}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.rollback", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("app")
    parser.add_argument("--to", help="commit (or its first characters) of the kept release to go back to")
    parser.add_argument("--from-backup", action="store_true",
                        help="restore the backup taken before the current release migrated (rows written since "
                             "are lost) instead of reversing migrations")
    parser.add_argument("--yes", action="store_true", help="do not ask on production")
    args = parser.parse_args(argv)
    try:
        target = find_app(args.inventory, args.app)
    except ConfigError as e:
        print(f"rollback: {e}", file=sys.stderr)
        return 1
    if target.production and not args.yes:
        if not sys.stdin.isatty():
            print("rollback on production: confirm interactively or pass --yes (CONFIRM=yes)", file=sys.stderr)
            return 1
        print(f"Roll {args.app} on {target.name} back to {args.to or 'the release live before this one'}"
              + (" by RESTORING THE PRE-MIGRATE BACKUP: rows written since are lost." if args.from_backup else "."))
        if input("Type the app name to go on: ").strip() != args.app:
            print("not confirmed; nothing changed", file=sys.stderr)
            return 1
    command = f"/usr/bin/python3 {RELEASE_ENGINE} rollback {shlex.quote(args.app)}"
    command += (f" --to {shlex.quote(args.to)}" if args.to else "") + (" --from-backup" if args.from_backup else "")
    what = f"rollback {args.app}" + (f" --to {args.to}" if args.to else "") + (" --from-backup" if args.from_backup
                                                                              else "")
    try:
        with held(target.name, target.data, what) as run:
            proc = target.ssh(command)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                run.result = "failed"
    except ConfigError as e:  # another run holds the host, or it cannot be reached
        print(f"rollback: {e}", file=sys.stderr)
        return 1
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not lines:
        print(f"{target.name}: rollback of {args.app} refused or failed (exit {proc.returncode}); the current "
              "release stays live", file=sys.stderr)
        return 1
    result = json.loads(lines[-1])
    reversed_ = ", ".join(result["reversed"]) or "none"
    print(f"{target.name}: {args.app} rolled back to {result['commit'][:12]} (from {result['from'][:12]}) in "
          f"{result['seconds']} s; migrations reversed: {reversed_}"
          + ("; database restored from the pre-migrate backup" if result["from_backup"] else ""))
    bad = app_answers(target, [target.config.apps[args.app].unit])
    print(f"The declared revision is unchanged: drift reports {args.app} as differing until the stack says so. "
          f"To keep this release, set in group_data/{target.group}.py (production) or the sandbox's overrides:\n"
          f"  apps[{args.app!r}]['source']['revision'] = {result['commit']!r}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
