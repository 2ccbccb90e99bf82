"""`make ssh HOST=x`: a login shell on a host, reached exactly as its inventory entry says pyinfra
reaches it (user, key, pinned host keys; the LAN host as its admin, who uses sudo there).

Usage: python -m cli.login INVENTORY HOST   (HOST: a host's name or its group)
Exit codes: ssh's own (0 after a normal logout, 255 cannot connect), 1 no such host.
"""

from __future__ import annotations

import argparse
import os
import sys

from cli.history import hosts
from iac.errors import ConfigError
from iac.ssh import ssh_argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.login", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("host", help="a host's name or its group")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this instead of a login shell")
    args = parser.parse_args(argv)
    try:
        found = hosts(args.inventory, args.host)
        if len(found) != 1:
            raise ConfigError(f"{args.host} names {len(found)} hosts: give one host's name")
    except ConfigError as e:
        print(f"ssh: {e}", file=sys.stderr)
        return 1
    argv_ = ssh_argv(found[0][2])
    at = argv_.index("BatchMode=yes")  # a person may be asked (a key's passphrase)
    del argv_[at - 1:at + 1]
    os.execvp("ssh", [*argv_, *args.command])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
