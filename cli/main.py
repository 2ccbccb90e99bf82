"""`iac`: every operator command of this repository, with exit codes that mean what they say.

The make targets are thin aliases of these; in scripts use ``iac`` (GNU make turns every failing
recipe into exit 2, so `make drift` cannot tell drift from an error; `iac drift` can).

Usage: iac [-i INVENTORY] COMMAND [ARGS...]    (iac COMMAND --help: that command's options)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli import early
from iac.exits import exit_now

DEFAULT_INVENTORY = "sandbox/inventory.py"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Command:
    module: str
    summary: str
    exits: str
    prefix: tuple[str, ...] = ()  # arguments before the caller's (a sub-command of the module)
    suffix: tuple[str, ...] = ()  # after the caller's first argument (manage APP <manage|shell> ...)
    inventory: bool = True  # the module takes the inventory as its first argument
    exit_map: Callable[[int], int] | None = None
    early: bool = False  # the module starts its work while it is imported (cli/early.py)


COMMANDS: dict[str, Command] = {
    "validate": Command("cli.validate", "validate both inventories' configuration offline", "0 valid, 1 invalid",
                        inventory=False),
    "secrets-template": Command("cli.secrets_template", "a skeleton of every secret the configuration needs, all "
                                "groups (--format text: required or optional)", "0 written, 1 invalid configuration",
                                inventory=False),
    "secrets-edit": Command("cli.secrets", "the encrypted secrets in $EDITOR (in memory; checked, re-encrypted)",
                            "0 saved or unchanged, 1 refused (nothing saved)", prefix=("edit",)),
    "secrets-set": Command("cli.secrets", "GROUP.PATH: one secret from stdin (unechoed at a terminal), encrypted",
                           "0 set, 1 refused (nothing saved)", prefix=("set",)),
    "secrets-recipients": Command("cli.secrets", "who can read the stack; --add 'KEY NAME' / --remove NAME "
                                  "re-encrypts", "0 listed or changed, 1 refused", prefix=("recipients",)),
    "rotate-restic": Command("cli.rotate", "TARGET [--limit HOST]: a restic password rotated (new key beside the "
                             "old, env file and stack switched, old key removed); no snapshot lost",
                             "0 rotated, 1 refused or failed (the old password still opens it)", prefix=("restic",)),
    "rotate-django-key": Command("cli.rotate", "APP [--yes]: a new Django secret key, the old one kept as a "
                                 "fallback for secret_key_fallback_days (where the app reads fallbacks)",
                                 "0 rotated, 1 refused or failed (the old key serves)", prefix=("django-key",)),
    "rotate-secret": Command("cli.rotate", "GROUP.PATH [--yes]: a provider-issued secret (webhook URL, S3 key) "
                             "from stdin, applied, checked from the hosts, then the old one to revoke",
                             "0 rotated, 1 refused or failed (the old value serves)", prefix=("secret",)),
    "rotate-deploy-key": Command("cli.rotate", "APP: a new deploy key beside the old; once registered on the "
                                 "git host (run again), it replaces the old, whose public half is printed to delete",
                                 "0 rotated, 3 the new key waits to be registered, 1 refused or failed (the old key "
                                 "serves)", prefix=("deploy-key",)),
    "rotate-sudo-password": Command("cli.rotate", "GROUP: the admin's sudo password (new one on stdin) on the "
                                    "group's hosts, proven by a new login, then the stack's hash",
                                    "0 rotated, 1 refused or failed (the old password is back)",
                                    prefix=("sudo-password",)),
    "preflight": Command("cli.preflight", "every prerequisite of a run against the inventory, each failure with "
                         "its fix (secrets, confirm, host keys, reachable, sudo, deploy keys, names, ACME)",
                         "0 every check passed, 1 one failed"),
    "plan": Command("cli.drift", "preview what a run would change (+ ~ -, Plan: line); nothing is applied",
                    "0 shown (changes or none), 1 error", exit_map=lambda code: 0 if code == 2 else code, early=True),
    "apply": Command("cli.apply", "the preview, then converge (production asks; --yes)",
                     "0 applied or nothing to apply, 1 refused, not confirmed or failed"),
    "drift": Command("cli.drift", "has anything drifted? what differs, per host",
                     "0 in sync, 2 drift, 1 error (a host unreachable, bad input)", early=True),
    "release": Command("cli.release", "release APP [--rev REV]: pin the commit, preview, apply that app only",
                       "0 released, 1 refused or failed (the old release serves)"),
    "rollback": Command("cli.rollback", "switch APP to the release live before (--to COMMIT)",
                        "0 rolled back, 1 refused or failed (the current release stays)"),
    "status": Command("cli.status", "each host at a glance: apps, certificates, backups, drift, updates, disk",
                      "0 all well, 2 something needs attention, 1 error"),
    "logs": Command("cli.logs", "APP [--what web|process|release|backup] [--since T] [--follow]: an app's logs",
                    "0 shown, 1 error"),
    "manage": Command("cli.manage", "APP ARGS...: manage.py in the live release, as the app, with its env",
                      "manage.py's own (0 done), 1 error", suffix=("manage",)),
    "shell": Command("cli.manage", "APP: manage.py shell (a terminal: interactive; else runs stdin)",
                     "the shell's own (0 done), 1 error", suffix=("shell",)),
    "pins": Command("cli.pins", "the revisions `make release` pinned, and where", "0 listed, 1 error",
                    prefix=("list",)),
    "unpin": Command("cli.pins", "APP: drop its `make release` pin (the stack's values file; production: says "
                     "which group_data line)", "0 removed, 1 no such pin or production", prefix=("unpin",)),
    "releases": Command("cli.releases", "APP: the live release and those before it, the commit for rollback --to",
                        "0 shown, 1 error"),
    "ssh": Command("cli.login", "HOST: a login shell, reached as the inventory says", "ssh's own, 1 no such host"),
    "history": Command("cli.history", "what changed each host: when, who, what, result", "0 read, 1 error"),
    "backup-status": Command("cli.backups", "newest dump per database, newest offsite snapshot, unit results",
                             "0 fresh, 2 stale or failed, 1 error", prefix=("status",)),
    "backup-now": Command("cli.backups", "run the backup units now and wait (--what dumps|offsite|...)",
                          "0 done, 1 failed", prefix=("now",)),
    "restore": Command("cli.backups", "restore --db NAME [--from local|offsite] [--at TIME]",
                       "0 restored and answering, 1 failed", prefix=("restore",)),
    "backup-list": Command("cli.backups", "--db NAME: local and offsite restore points, with the --at to give restore",
                           "0 listed, 1 error", prefix=("list",)),
    "restore-drill": Command("cli.backups", "restore the newest dumps into scratch databases, compare rows",
                             "0 passed, 1 failed", prefix=("drill",)),
    "dr": Command("cli.dr", "rebuild --limit HOST from a bare Debian box and its offsite backups",
                  "0 rebuilt, 1 failed, 3 deploy keys to register"),
    "upgrade": Command("cli.upgrade", "--limit GROUP --to ADDRESS: the host backed up and rebuilt on the next Debian "
                       "release at a new machine, the old one serving until the switch",
                       "0 rebuilt and in sync, 1 failed (the old host serves on), 3 deploy keys to register"),
    "bench": Command("cli.bench", "the drift check's cost against pyinfra's floor", "0 measured, 1 error"),
}


def completion() -> str:
    """A bash completion for ``iac`` (``source <(iac completion)``)."""
    return ("_iac() { local cur=${COMP_WORDS[COMP_CWORD]}; if [ \"$COMP_CWORD\" -eq 1 ]; then "
            f"COMPREPLY=($(compgen -W '{' '.join([*COMMANDS, 'completion'])}' -- \"$cur\")); "
            "else COMPREPLY=($(compgen -f -- \"$cur\")); fi; }; complete -F _iac iac\n")


def parser() -> argparse.ArgumentParser:
    epilog = "commands (exit codes):\n" + "\n".join(
        f"  {name:<14} {c.summary}\n  {'':<14} exit: {c.exits}" for name, c in COMMANDS.items())
    epilog += "\n  completion     print a bash completion (source <(iac completion))"
    p = argparse.ArgumentParser(prog="iac", description=__doc__.split("\n\n")[0], epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--inventory", default=os.environ.get("IAC_INVENTORY") or DEFAULT_INVENTORY,
                   help=f"inventory file (default: $IAC_INVENTORY, else {DEFAULT_INVENTORY})")
    p.add_argument("command", choices=[*COMMANDS, "completion"], metavar="COMMAND")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (iac COMMAND --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(argv)[1]


def run(argv: list[str] | None = None) -> tuple[Command | None, int]:
    """The command named in ``argv`` (None for ``completion``) and its exit code."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "completion":
        sys.stdout.write(completion())
        return None, 0
    command = COMMANDS[args.command]
    # the commands run from the repository (deploy files, pyinfra, templates are found there), with
    # the inventory named from where `iac` was started
    inventory = Path(args.inventory)
    if not inventory.is_absolute():
        inventory = inventory.resolve() if inventory.exists() else REPO / inventory
    os.chdir(REPO)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    rest = [*args.args[:1], *command.suffix, *args.args[1:]] if command.suffix else args.args
    forwarded = [*([str(inventory)] if command.inventory else []), *command.prefix, *rest]
    if command.early:
        early.leave(command.module, forwarded)  # it starts its work while it imports (cli/early.py)
    module = importlib.import_module(command.module)
    early.forget(command.module)
    try:
        code = module.main(forwarded)
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2: here 1, never "drift")
        code = exc.code if isinstance(exc.code, int) else 1
        if code == 2:
            code = 1
    code = int(code or 0)
    return command, (command.exit_map(code) if command.exit_map else code)


if __name__ == "__main__":
    ran, status = run()
    if ran is not None and ran.early:
        # plan and drift only read: their answer is out, the interpreter's teardown is not waited for
        exit_now(status)
    sys.exit(status)
