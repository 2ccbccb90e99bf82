"""`make dr-drill` (sandbox only): prove the LAN host can be rebuilt from its offsite backups.

1. back up now (dumps, offsite, system state) and record the rows per table of every database;
2. destroy the LAN host: a bare Debian 12 copy boots in its place (the dump disk is kept, as a
   disk that survived; the rebuild does not use it);
3. rebuild it with the one command an operator would run (`python -m cli.dr INVENTORY --limit lan`,
   cli/dr.py): system state staged, converge from bare, databases from the offsite dumps;
4. prove both apps answer through nginx, drift is 0 and the row counts are the same.
Each phase's time is printed; the JSON report goes to stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from cli.backups import cmd_now
from cli.dr import find, phase, rebuild
from iac.errors import ConfigError
from sandbox.world import World

INVENTORY = "sandbox/inventory.py"


def counts(target) -> dict:  # noqa: ANN001 (cli.backups.Target)
    proc = target.ssh("/usr/local/sbin/iac-backup counts")
    if proc.returncode != 0:
        raise ConfigError(f"cannot count rows: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def main() -> int:
    with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout is the JSON report alone
        result = drill()
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 2


def drill() -> dict | int:
    world = World()
    times: dict[str, float] = {}
    total = time.monotonic()
    try:
        target = find(INVENTORY, "lan")
        started = time.monotonic()
        if cmd_now(INVENTORY, "all", "lan") != 0:
            raise ConfigError("the backups before the drill failed")
        before = counts(target)
        phase(times, "backups now + row counts recorded", started)
        started = time.monotonic()
        world.reset_host("lan")
        phase(times, "LAN host destroyed, bare Debian 12 booted in its place", started)
        rebuild(INVENTORY, target, times)
        after = counts(target)
    except ConfigError as exc:
        print(f"dr-drill: FAILED: {exc}")
        return 1
    phase(times, "total", total)
    differing = {db: {t: [n, after.get(db, {}).get(t)] for t, n in tables.items() if after.get(db, {}).get(t) != n}
                 for db, tables in before.items()}
    differing = {db: d for db, d in differing.items() if d}
    rows = sum(sum(t.values()) for t in before.values())
    print(f"dr-drill: {'PASSED' if not differing else 'FAILED'}: {len(before)} databases, {rows} rows "
          f"{'the same' if not differing else 'DIFFERENT'} after the rebuild; total {times['total']}s")
    return {"ok": not differing, "databases": len(before), "rows": rows, "differing": differing, "seconds": times}


if __name__ == "__main__":
    sys.exit(main())
