"""`make logs APP=x`: an app's logs on its host, newest last (FOLLOW=1 keeps following).

What (``--what``):

+ ``web`` (default): its gunicorn's requests and errors (``access.log`` and ``error.log`` under the
  app's ``log_dir``, or the journal of its unit when it has none) and its units' starts and stops;
+ ``process``: its declared processes' units (workers, schedulers);
+ ``release``: the release engine's steps for this app (/var/log/iac/releases.log);
+ ``backup``: the host's backup units (dumps, offsite copies, checks).

Usage: python -m cli.logs INVENTORY APP [--what web|process|release|backup] [--since TIME] [--lines N]
       [--follow]
Exit codes: 0 shown (or followed until interrupted), 1 error.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from cli.rollback import find_app
from iac.errors import ConfigError
from iac.paths import HOST
from operations.backups.deploy import backup_units

WHAT = ("web", "process", "release", "backup")
# what journalctl --since takes, and nothing a shell would read: 2026-12-05 10:00, -1h, today, yesterday
SINCE = re.compile(r"[0-9A-Za-z:+ -]{1,40}")


def journal(units: list[str], since: str | None, lines: int, follow: bool) -> str:
    args = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines)]
    args += [f"--unit={u}" for u in units] + ([f"--since={since}"] if since else []) + (["-f"] if follow else [])
    return " ".join(shlex.quote(a) for a in args)


def command(target, app: str, what: str, since: str | None, lines: int, follow: bool) -> str:  # noqa: ANN001
    """The command run on the host (as root) for these logs."""
    config = target.config
    declared = config.apps[app]
    paths = config.app_paths(app)
    if what == "web":
        units = [f"{declared.unit}.service", paths.socket_unit]
        if declared.log_dir:
            files = " ".join(shlex.quote(f"{declared.log_dir}/{f}") for f in ("access.log", "error.log"))
            tail = f"tail -n {lines} {'-F ' if follow else ''}{files}"
            # the units' journal first (starts, stops, crashes), then the request log, followed if asked
            return f"{journal(units, since, lines, False)}; {tail}"
        return journal(units, since, lines, follow)
    if what == "process":
        units = [f"{u}.service" for u in paths.process_units.values()]
        if not units:
            raise ConfigError(f"{app} declares no processes (apps.{app}.processes): its logs are --what web")
        return journal(units, since, lines, follow)
    if what == "release":
        log = shlex.quote(HOST.release_log)
        pattern = shlex.quote(f" {app}: ")
        if follow:
            return f"tail -n +1 -F {log} | grep --line-buffered -F {pattern}"
        return f"grep -F {pattern} {log} | tail -n {lines}"
    if config.backups is None:
        raise ConfigError(f"{target.name} declares no backups")
    return journal([f"{u}.service" for u in backup_units(config.backups)], since, lines, follow)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.logs", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("app")
    parser.add_argument("--what", choices=WHAT, default="web")
    parser.add_argument("--since", help="journalctl's --since: '2026-12-05 10:00', -1h, today")
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--follow", action="store_true", help="keep following (Ctrl-C ends)")
    args = parser.parse_args(argv)
    try:
        if args.since and not SINCE.fullmatch(args.since):
            raise ConfigError(f"--since {args.since!r}: give a time as journalctl takes it "
                              "(2026-12-05 10:00, -1h, today)")
        if not 1 <= args.lines <= 100000:
            raise ConfigError("--lines: from 1 to 100000")
        target = find_app(args.inventory, args.app)
        remote = command(target, args.app, args.what, args.since, args.lines, args.follow)
        done = target.ssh(remote, stream=True)
    except ConfigError as e:
        print(f"logs: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0 if done.returncode in (0, 130, 141) else 1


if __name__ == "__main__":
    sys.exit(main())
