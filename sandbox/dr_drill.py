"""`make dr-drill` and `make upgrade-drill HOST=lan|public` (sandbox only): prove a host can be
rebuilt from its offsite backups, on the release it runs (disaster recovery) or on the next
Debian release (the upgrade, iac/debian.py: a new host, never an in-place dist-upgrade).

1. back up now (dumps, offsite, system state) and record the rows per table of every database;
2. destroy the host: a bare copy of the golden image boots in its place, of the same release
   or the next one (the LAN host's dump disk is kept, as a disk that survived; the rebuild does
   not use it); the sandbox's inventory declares the release the new disk was made from;
3. rebuild it with the one command an operator would run (`python -m cli.dr INVENTORY --limit
   HOST`, cli/dr.py): system state staged (or, without one, the apps' new deploy keys registered
   on the forge), converge from bare (every app's virtualenv built on the new Python), databases
   from the offsite dumps (PostgreSQL 15 dumps into 17 on an upgrade);
4. prove every app answers through nginx, drift is 0 and the row counts are the same.
What would break fails the drill, naming the app: first, before anything is touched, a requirement
without a wheel for the new Python (pip resolves every app's requirements for it on the old host:
release_engine/wheels.py; the new host has no compiler); then anything the rebuild meets (a
migration the new PostgreSQL refuses), with the release engine's reason. Each phase's time is
printed; the JSON report goes to stdout.

Usage: python -m sandbox.dr_drill [--host lan|public] [--upgrade]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from cli.backups import cmd_now
from cli.dr import find, phase, rebuild, requirements_on, what_breaks
from iac.debian import next_release, release
from iac.errors import ConfigError
from sandbox.world import World

INVENTORY = "sandbox/inventory.py"


def counts(target) -> dict:  # noqa: ANN001 (cli.backups.Target)
    proc = target.ssh("/usr/local/sbin/iac-backup counts")
    if proc.returncode != 0:
        raise ConfigError(f"cannot count rows: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sandbox.dr_drill", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="lan", choices=["lan", "public"])
    p.add_argument("--upgrade", action="store_true", help="rebuild on the next Debian release")
    args = p.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout is the JSON report alone
        result = drill(args.host, args.upgrade)
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 2


def drill(group: str = "lan", upgrade: bool = False) -> dict | int:
    world = World()
    name = "upgrade-drill" if upgrade else "dr-drill"
    times: dict[str, float] = {}
    total = time.monotonic()
    before_release = world.debian(group)
    try:
        try:
            after_release = next_release(before_release).version if upgrade else before_release
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        change = (f"Debian {before_release} -> {after_release}: {release(before_release).summary()} -> "
                  f"{release(after_release).summary()}" if upgrade else f"Debian {before_release}")
        print(f"{name}: {group}, {change}")
        target = find(INVENTORY, group)
        if upgrade:
            started = time.monotonic()
            if broken := requirements_on(target, release(after_release)):
                raise ConfigError(f"the apps' requirements on Python {release(after_release).python} (checked on "
                                  "the host, nothing was changed):\n" + "\n".join(f"  {b}" for b in broken))
            phase(times, f"the apps' requirements have wheels for Python {release(after_release).python}", started)
        started = time.monotonic()
        if cmd_now(INVENTORY, "all", group) != 0:
            raise ConfigError("the backups before the drill failed")
        before = counts(target)
        phase(times, "backups now + row counts recorded", started)
        started = time.monotonic()
        world.reset_host(group, debian=after_release)
        phase(times, f"{group} host destroyed, bare Debian {after_release} booted in its place", started)
        rebuild(INVENTORY, target, times, register=world.register_key)
        after = counts(target)
    except ConfigError as exc:
        print(f"{name}: FAILED: {exc}")
        for line in what_breaks(str(exc)):
            print(f"{name}: on Debian {after_release}: {line}")
        return 1
    phase(times, "total", total)
    differing = {db: {t: [n, after.get(db, {}).get(t)] for t, n in tables.items() if after.get(db, {}).get(t) != n}
                 for db, tables in before.items()}
    differing = {db: d for db, d in differing.items() if d}
    rows = sum(sum(t.values()) for t in before.values())
    print(f"{name}: {'PASSED' if not differing else 'FAILED'}: {len(before)} databases, {rows} rows "
          f"{'the same' if not differing else 'DIFFERENT'} after the rebuild on Debian {after_release}; "
          f"total {times['total']}s")
    return {"ok": not differing, "host": group, "debian": [before_release, after_release],
            "databases": len(before), "rows": rows, "differing": differing, "seconds": times}


if __name__ == "__main__":
    sys.exit(main())
