"""Rebuild a host from a bare Debian box and the offsite backups, with one command.

The runbook's disaster-recovery sequence ("Disaster recovery (high-level)"), each step as it is
done here:

  1-3. Debian installed, network and SSH reachable; restic and the system-state env file
       (from the secrets file)              -> dr_bootstrap.py (pyinfra), which also
  4.   restores the newest system-state snapshot, into a staging directory (not over /)
  5-6. daemon-reload, users, repositories, venvs, migrate, collectstatic -> deploy.py (the
       converge); the apps' deploy keys are taken from the staged state, so nothing has to be
       registered on the git host again
  7.   databases from the offsite dumps     -> `iac-backup restore DB --from offsite` per database
  then each app answers through nginx, and the drift check reports the host in sync.

A host without a system-state backup (the public VPS) has no old deploy keys to take: its apps'
users and keys are made first (deploy_keys.py) and each printed key must be registered on the git
host before the converge can fetch (the sandbox's drills register them on its forge; `make dr`
stops there with exit 3 and the keys, and a second run with --keys-registered continues).

Usage: python -m cli.dr INVENTORY --limit GROUP [--yes] [--keys-registered]
Production (a stack named "production") asks for the host name unless --yes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from cli import drift
from cli.backups import Target, app_answers, targets
from iac import progress
from iac.debian import DebianRelease
from iac.errors import ConfigError
from iac.paths import HOST
from iac.repo import REPO

PYINFRA = str(REPO / ".venv/bin/pyinfra")


def phase(times: dict[str, float], label: str, started: float) -> None:
    times[label] = round(time.monotonic() - started, 1)
    print(f"dr: {label}: {times[label]}s", file=sys.stderr, flush=True)


def pyinfra(inventory: str, deploy: str, limit: str) -> str:
    """Run ``deploy`` on ``limit``; its output, or a ConfigError with its tail."""
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    env.setdefault("PYINFRA_PROGRESS", "off")
    env["IAC_RUN_WHAT"] = f"dr {deploy}"  # the host's history says which step of a rebuild ran
    proc = progress.run([PYINFRA, inventory, deploy, "-y", "--limit", limit], f"dr {deploy}", cwd=REPO, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise ConfigError(f"{deploy} failed on {limit}:\n{tail}")
    return proc.stdout


class KeysToRegister(ConfigError):
    """The new host's deploy keys must be registered on the git host before the rebuild goes on."""

    exit_code = 3


def deploy_keys(output: str) -> list[tuple[str, str, str]]:
    """(host, app, public key) of each ``DEPLOY-KEY host app url key`` line deploy_keys.py printed."""
    keys = []
    for line in output.splitlines():
        if line.startswith("DEPLOY-KEY "):
            _, host, app, _url, *key = line.split()
            if len(key) >= 2:
                keys.append((host, app, " ".join(key[:2])))
    return keys


# a release engine's failure as pyinfra prints it: "[host] [iac-app-release APP] what failed"
ENGINE_FAILURE = re.compile(r"\[iac-app-release (\w+)\] (.*(?:failed|refused).*)$")


def what_breaks(output: str) -> list[str]:
    """Each app whose release failed on the new host, with the engine's reason (pip's last ERROR
    line names the requirement): ``app chip_dashboard: pip install failed on Python 3.13.5: ...``."""
    found = []
    for line in output.splitlines():
        if (m := ENGINE_FAILURE.search(line)) and "alert NOT sent" not in line:
            found.append(f"app {m.group(1)}: {m.group(2)}")
    return found


def requirements_on(target: Target, release: DebianRelease) -> list[str]:
    """Each app of ``target`` whose live requirements have no wheel for ``release``'s Python, with
    pip's reason (an upgrade's first check, on the old host: release_engine/wheels.py)."""
    broken = []
    for app in target.config.apps:
        proc = target.ssh(f"/usr/bin/python3 {HOST.release_engine} wheels {shlex.quote(app)} "
                          f"--python {release.python} --glibc {release.glibc}")
        if proc.returncode == 2:  # usage: an engine from before the check (or a wrong argument)
            raise ConfigError(f"{target.name}: its release engine cannot check requirements (exit 2): converge it "
                              f"first (make apply LIMIT={target.group}), then run this again")
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            broken.append(lines[-1] if lines else f"{app}: the check failed (exit {proc.returncode})")
    return broken


def restore_databases(target: Target) -> list[str]:
    """Every backed-up database of the host, from the newest offsite snapshot."""
    done = []
    for db in target.config.backup_databases():
        proc = target.ssh(f"/usr/local/sbin/iac-backup restore {db} --from offsite")
        if proc.returncode != 0:
            raise ConfigError(f"restore of {db} from offsite failed: {proc.stderr.strip()[-500:]}")
        done.append(json.loads(proc.stdout)["database"])
    return done


def find(inventory: str, limit: str) -> Target:
    found = [t for t in targets(inventory) if limit in (t.group, t.name)]
    if len(found) != 1:
        raise ConfigError(f"{inventory}: --limit {limit} must name one host that declares backups")
    return found[0]


def confirmed(target: Target) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"Rebuild {target.name} from its backups? Type its name: ").strip() == target.name


def rebuild(inventory: str, target: Target, times: dict[str, float],
            register: Callable[[str, str], None] | None = None) -> None:
    """Run the whole sequence against one host; raise ConfigError naming the failed step.
    ``register(app, public_key)`` puts a new deploy key on the git host (a host without a
    system-state backup); without it the keys are named and the rebuild stops (KeysToRegister)."""
    limit = target.name
    started = time.monotonic()
    backups = target.config.backups
    if backups is not None and backups.offsite.system_state is not None:
        pyinfra(inventory, "dr_bootstrap.py", limit)
        phase(times, "restic + system state staged", started)
    else:
        keys = deploy_keys(pyinfra(inventory, "deploy_keys.py", limit))
        if keys and register is None:
            raise KeysToRegister("register each deploy key, read-only, for its app's repository, then run again:\n"
                                 + "\n".join(f"  {app}: {key}" for _host, app, key in keys))
        for _host, app, key in keys:
            register(app, key)
        phase(times, f"app users made, deploy keys registered ({len(keys)})", started)
    started = time.monotonic()
    pyinfra(inventory, "deploy.py", limit)
    phase(times, "converge from bare (deploy.py)", started)
    started = time.monotonic()
    restored = restore_databases(target)
    phase(times, f"databases restored from offsite ({len(restored)})", started)
    started = time.monotonic()
    units = [app.unit for app in target.config.apps.values()]
    if app_answers(target, units):
        raise ConfigError("an app does not answer through nginx after the rebuild")
    code, report = drift.check(inventory, extra_args=["--limit", limit])
    phase(times, "apps answer through nginx + drift check", started)
    if code != drift.IN_SYNC:
        raise ConfigError(f"the rebuilt host is not in sync with the repository:\n{report}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cli.dr", description=__doc__.splitlines()[0])
    p.add_argument("inventory")
    p.add_argument("--limit", required=True, help="the group or host to rebuild, e.g. lan")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--keys-registered", action="store_true",
                   help="the new host's deploy keys (printed by the first run) are on the git host")
    args = p.parse_args(argv)
    times: dict[str, float] = {}
    try:
        target = find(args.inventory, args.limit)
        if target.production and not args.yes and not confirmed(target):
            print("not confirmed; nothing changed", file=sys.stderr)
            return 1
        started = time.monotonic()
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout is the JSON report alone
            rebuild(args.inventory, target, times,
                    register=(lambda app, key: None) if args.keys_registered else None)
        phase(times, "total", started)
    except KeysToRegister as exc:
        print(f"dr: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ConfigError, subprocess.TimeoutExpired) as exc:
        print(f"dr: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"host": target.name, "seconds": times}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
