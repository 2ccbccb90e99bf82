"""Rotations, one command per kind of secret, each leaving the host serving and nothing lost.

- ``rotate-django-key``: cli/rotate/django_key.py
- ``rotate-secret``: cli/rotate/issued.py
- ``rotate-deploy-key``: cli/rotate/deploy_key.py
- ``rotate-sudo-password``: cli/rotate/sudo_password.py
- ``rotate-restic``: cli/rotate/restic.py

Usage: python -m cli.rotate INVENTORY restic TARGET [--limit HOST]
       python -m cli.rotate INVENTORY django-key APP [--yes]
       python -m cli.rotate INVENTORY secret GROUP.PATH [--yes]   (the new value on stdin)
       python -m cli.rotate INVENTORY deploy-key APP
       python -m cli.rotate INVENTORY sudo-password GROUP   (the new password on stdin)
Exit codes: 0 rotated, 3 a new deploy key waits to be registered, 1 refused or failed (the old secret
still serves: both passwords, or the old alone, still open the repository; the old Django key is live).
"""

from __future__ import annotations

import argparse
import sys

from cli.rotate.deploy_key import rotate_deploy_key
from cli.rotate.django_key import rotate_django_key
from cli.rotate.issued import rotate_secret
from cli.rotate.restic import rotate_restic
from cli.rotate.sudo_password import rotate_sudo_password
from iac.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.rotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("kind", choices=["restic", "django-key", "secret", "deploy-key", "sudo-password"])
    parser.add_argument("target", help="restic: the offsite target (postgres or system_state); django-key, "
                                       "deploy-key: the app; sudo-password: the group; secret: GROUP.PATH "
                                       "(e.g. lan.backups.alerts.webhook_url)")
    parser.add_argument("--limit", help="restic: the host (when more than one declares the target)")
    parser.add_argument("--yes", action="store_true", help="django-key: do not ask on production")
    parser.add_argument("--stdin", action="store_true", help="restic, django-key: the new secret from stdin "
                        "(e.g. a password manager's) instead of one made here")
    args = parser.parse_args(argv)
    try:
        if args.kind == "django-key":
            return rotate_django_key(args.inventory, args.target, args.yes, given=args.stdin)
        if args.kind == "deploy-key":
            return rotate_deploy_key(args.inventory, args.target)
        if args.kind == "sudo-password":
            return rotate_sudo_password(args.inventory, args.target)
        if args.kind == "secret":
            return rotate_secret(args.inventory, args.target, args.yes)
        return rotate_restic(args.inventory, args.target, args.limit, given=args.stdin)
    except ConfigError as exc:
        print(f"rotate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
