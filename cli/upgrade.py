"""`make upgrade HOST=<group> TO=<address>`: a host moved to the next Debian release the way
`make upgrade-drill` proves it in the sandbox: a new machine, never an in-place dist-upgrade.

  0. on the old host, pip resolves every app's live requirements for the new release's Python,
     from wheels only (release_engine/wheels.py): one that would have to be compiled on the new
     host stops the upgrade here, naming the app and the requirement; nothing was changed;
  1. the old host backs up now (every dump, offsite and system state) and keeps serving;
  2. the new machine (a fresh install of the next release, reachable at TO with its SSH key pinned,
     the same admin login) is rebuilt with `make dr`'s steps, declared on the next release
     (stack/upgrade.py): system state staged (or its apps' new deploy keys printed, exit 3, to be
     registered on the git host; then run again with KEYS_REGISTERED=yes), converge from bare on
     the new Python and PostgreSQL, databases from the offsite dumps;
  3. each app answers through nginx on the new machine and its drift check is in sync;
  4. the switch is the operator's (README, "Upgrading a host to the next Debian release"): writes
     stop on the old host, one last backup and restore, then names and addresses move, and
     ``host.debian`` in group_data says the new release. The old host is kept until then.

TLS certificates are issued by the first run after the switch (the names still point at the old
host, where the ACME server would check). Exit 0 rebuilt and in sync, 1 failed (the old host
serves on, untouched but for its backups), 3 deploy keys to register.

Usage: python -m cli.upgrade INVENTORY --limit GROUP --to ADDRESS [--yes] [--keys-registered]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from cli.backups import cmd_now
from cli.dr import KeysToRegister, find, phase, rebuild, requirements_on, what_breaks
from iac.debian import next_release
from iac.errors import ConfigError
from stack.load import GROUPS
from stack.upgrade import UPGRADE_ENV, check_address


def addresses(name: str) -> set[str]:
    """The IP addresses ``name`` resolves to here (none when it does not resolve)."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, 22, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return set()


def confirmed(name: str, to: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"Back up {name} and rebuild it on the machine at {to}? Type its name: ").strip() == name


def upgrade(inventory: str, group: str, to: str, times: dict[str, float], yes: bool = False,
            keys_registered: bool = False) -> dict:
    """Every step against the old host and the new machine; a ConfigError names the failed one."""
    if os.environ.get(UPGRADE_ENV):
        raise ConfigError(f"{UPGRADE_ENV} is set in this shell ({os.environ[UPGRADE_ENV]!r}): unset it; make upgrade "
                          "sets it itself")
    if group not in GROUPS:
        raise ConfigError(f"HOST={group}: give a group ({', '.join(GROUPS)}); an upgrade moves its one host")
    old = find(inventory, group)
    current = old.config.debian()
    try:
        new_release = next_release(current.version)
    except ValueError as exc:
        raise ConfigError(f"{old.name}: {exc}") from None
    serving = str(old.data.get("ssh_hostname") or "")
    if addresses(serving) & addresses(to):
        raise ConfigError(f"TO={to} is where {old.name} serves today ({serving}): give the new machine's address; "
                          "nothing was changed")
    print(f"upgrade: {old.name} from {current.summary()}\n         to {new_release.summary()}, rebuilt at {to}; "
          f"{old.data.get('ssh_hostname')} serves on until the switch")
    started = time.monotonic()
    if broken := requirements_on(old, new_release):
        raise ConfigError(f"the apps' requirements on Python {new_release.python} (checked on {old.name}, nothing "
                          "was changed):\n" + "\n".join(f"  {b}" for b in broken))
    phase(times, f"the apps' requirements have wheels for Python {new_release.python}", started)
    if old.production and not yes and not confirmed(old.name, to):
        raise ConfigError("not confirmed; nothing changed")
    started = time.monotonic()
    if cmd_now(inventory, "all", old.name) != 0:
        raise ConfigError(f"the backups of {old.name} failed: nothing else was done")
    phase(times, f"{old.name}: backups now (it keeps serving)", started)
    os.environ[UPGRADE_ENV] = f"{old.group}={to}"
    new = find(inventory, group)
    rebuild(inventory, new, times, register=(lambda app, key: None) if keys_registered else None)
    return {"host": old.name, "from": current.version, "to": new_release.version, "address": to}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cli.upgrade", description=__doc__.splitlines()[0])
    p.add_argument("inventory")
    p.add_argument("--limit", required=True, help="the group whose host moves, e.g. lan")
    p.add_argument("--to", required=True, help="the new machine's address (a fresh install of the next release)")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--keys-registered", action="store_true",
                   help="the new machine's deploy keys (printed by the first run) are on the git host")
    args = p.parse_args(argv)
    times: dict[str, float] = {}
    try:
        to = check_address(args.to, "TO")
        started = time.monotonic()
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout is the JSON report alone
            report = upgrade(args.inventory, args.limit, to, times, args.yes, args.keys_registered)
        phase(times, "total", started)
    except KeysToRegister as exc:
        again = f"make upgrade INVENTORY={args.inventory} HOST={args.limit} TO={args.to} KEYS_REGISTERED=yes"
        print(f"upgrade: {exc}\n(then: {again}{' CONFIRM=yes' if args.yes else ''})", file=sys.stderr)
        return exc.exit_code
    except (ConfigError, subprocess.TimeoutExpired) as exc:
        print(f"upgrade: FAILED: {exc}", file=sys.stderr)
        for line in what_breaks(str(exc)):
            print(f"upgrade: on the new machine: {line}", file=sys.stderr)
        return 1
    print(f"upgrade: {report['host']} rebuilt on Debian {report['to']} at {to}, in sync; switch over as the "
          "README says (section: Upgrading a host to the next Debian release)", file=sys.stderr)
    print(json.dumps({**report, "seconds": times}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
