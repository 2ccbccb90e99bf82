"""`make manage APP=x CMD='...'` and `make shell APP=x`: manage.py in the app's live release, on its
host, as the app's user with exactly its units' environment (systemd reads the env file: nothing
sources it in a shell), confined as its units are (the release engine's ``manage``,
/usr/local/sbin/iac-manage).

``shell`` is ``manage.py shell``: at a terminal, an interactive session (ssh -t; sudo asks for the
admin's password there); otherwise what comes on stdin is run (``echo 'print(1)' | iac shell app``).

Usage: python -m cli.manage INVENTORY APP manage ARGS...  |  python -m cli.manage INVENTORY APP shell
Exit codes: manage.py's own (0 done), 1 error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from cli.rollback import find_app
from iac.errors import ConfigError
from iac.ssh import ssh_argv

IAC_MANAGE = "/usr/local/sbin/iac-manage"


def remote(app: str, args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in [IAC_MANAGE, app, *args])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.manage", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("app")
    parser.add_argument("kind", choices=["manage", "shell"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="manage.py's arguments (manage)")
    args = parser.parse_args(argv)
    try:
        target = find_app(args.inventory, args.app)
        if args.kind == "manage":
            if not args.args:
                raise ConfigError("give manage.py's arguments, e.g. CMD='check --deploy'")
            done = target.ssh(remote(args.app, args.args), stream=True)
            return done.returncode
        if args.args:
            raise ConfigError("shell takes no arguments")
        if sys.stdin.isatty():
            # an interactive session: a terminal on the host, sudo asks for the password there
            line = remote(args.app, ["shell"])
            command = f"sudo {line}" if target.data.get("_sudo") else line
            os.execvp("ssh", [*ssh_argv(target.data)[:1], "-t", *ssh_argv(target.data)[1:], command])
        done = target.ssh(remote(args.app, ["shell"]), stream=True, input=sys.stdin.read())
        return done.returncode
    except ConfigError as e:
        print(f"manage: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
