"""`iac secrets`: a stack's encrypted secrets (stack/vault.py), edited, set and shared.

* ``edit``: decrypt into a private directory in memory (/dev/shm), open ``$EDITOR`` on it, check
  the result against the configuration (the stack's inventory loads it: an unknown key, a value of
  the wrong shape or a malformed file is refused, and may be edited again), re-encrypt. The
  plaintext is removed whatever happens: saved, refused, Ctrl-C, the terminal closed.
* ``set GROUP.PATH``: one value, read from stdin (or typed, not echoed, at a terminal), checked
  and encrypted the same way. ``iac secrets set lan.apps.rental_scheduler.secret_key < file``.
* ``recipients``: who can read the stack; ``--add 'KEY NAME'`` or ``--remove NAME`` re-encrypts
  it to the new list. A removed reader may have kept a copy: rotate what they could read.

The stack is the inventory's: production (``inventory.py``: ``secrets/production.age`` and
``secrets/production.recipients``, committed) or the sandbox's (in ``.sandbox/<name>/``). No
value is ever printed.

Usage: python -m cli.secrets INVENTORY edit | set GROUP.PATH | recipients [--add 'KEY NAME' | --remove NAME]
Exit codes: 0 done (or nothing changed), 1 refused or failed (the stack is as it was).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iac.errors import ConfigError
from iac.repo import REPO
from stack.load import GROUPS
from stack.secrets import SecretsFile, changed_leaves, production_vault, value_at
from stack.vault import PENDING, Vault, parse_recipient, parse_recipients, write_recipients

MEMORY_DIRS = ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR") or "/run/user/0")


def load_stack(inventory: str) -> tuple[Vault, SecretsFile | None]:
    """The encrypted stack an inventory reads, and its secrets as the inventory loaded them: the
    vault its secrets source holds (the sandbox's), else production's (which may not exist yet:
    the first `edit` or `set` makes it)."""
    env = dict(os.environ)
    os.environ.pop("IAC_SECRETS_FILE", None)  # the stack's own file, never a plain one named for a run
    try:
        values = runpy.run_path(inventory)
    finally:
        os.environ.clear()
        os.environ.update(env)
    source = values.get("_secrets")
    source = source if isinstance(source, SecretsFile) else None
    if source is not None and source.vault is not None:
        return source.vault, source
    if Path(inventory).resolve() == (REPO / "inventory.py").resolve():
        return production_vault(), source
    raise ConfigError(f"{inventory}: its secrets are not an encrypted stack (stack/vault.py)")


def stack_vault(inventory: str) -> Vault:
    return load_stack(inventory)[0]


def current(vault: Vault) -> bytes:
    return vault.read() if vault.exists() else b"{}\n"


def checked(inventory: str, vault: Vault, plaintext: bytes) -> bytes:
    """``plaintext`` as the stack's inventory reads it (a generated stack may add to it), or a
    ConfigError saying what is wrong (the JSON, a group, an unknown key it adds, a value's shape)."""
    try:
        new = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}") from None
    before = json.loads(current(vault))
    PENDING[vault.cipher] = plaintext
    try:
        # the inventory loads: every host's configuration is validated with these secrets
        _, source = load_stack(inventory)
        if source is not None:
            source.refuse_unknown(changed_leaves(before, new) if isinstance(new, dict) else None)
        return PENDING[vault.cipher]
    finally:
        PENDING.pop(vault.cipher, None)


def save(inventory: str, vault: Vault, plaintext: bytes) -> None:
    final = checked(inventory, vault, plaintext)
    vault.write(final)


@contextlib.contextmanager
def memory_file(text: bytes) -> Iterator[Path]:
    """A 0600 file holding ``text`` in a fresh 0700 directory in memory, removed on the way out,
    including after Ctrl-C, SIGTERM or SIGHUP (those end the command through this block)."""
    base = next((d for d in MEMORY_DIRS if d and Path(d).is_dir() and os.access(d, os.W_OK)), None)
    if base is None:
        raise ConfigError(f"no memory-backed directory to edit in ({', '.join(MEMORY_DIRS)}): "
                          "use `iac secrets set` instead")
    previous = {sig: signal.signal(sig, _leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    directory = Path(tempfile.mkdtemp(prefix="iac-secrets-", dir=base))
    try:
        path = directory / "secrets.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(text)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _leave(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def same_json(a: bytes, b: bytes) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def edit(inventory: str, vault: Vault) -> int:
    before = current(vault)
    editor = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    text = json.dumps(json.loads(before), indent=2).encode() + b"\n"
    with memory_file(text) as path:
        while True:
            if subprocess.run([*editor, str(path)], check=False).returncode != 0:
                print("secrets: the editor failed; nothing saved", file=sys.stderr)
                return 1
            edited = path.read_bytes()
            if edited == text or same_json(edited, before):
                print(f"secrets: no change ({vault.cipher})")
                return 0
            try:
                save(inventory, vault, edited)
            except ConfigError as exc:
                print(f"secrets: refused, nothing saved: {exc}", file=sys.stderr)
                if sys.stdin.isatty() and input("edit again? [Y/n] ").strip().lower() in ("", "y", "yes"):
                    continue
                return 1
            print(f"secrets: saved, encrypted to {len(parse_recipients(vault.recipients))} recipient(s) "
                  f"({vault.cipher})")
            return 0


def put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path`` (group first) in a stack's decrypted values, making the sections
    on the way; a section that holds a value instead is refused, naming the dotted path."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} holds a value, not options")
    node[path[-1]] = value


def read_value(label: str) -> str:
    """One secret from stdin: unechoed at a terminal, else the input less its final newline."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{label} (not echoed): ")
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise ConfigError(f"{label}: no value on stdin (nothing saved)")
    return value


def read_values(labels: list[str]) -> list[str]:
    """Several secrets from stdin: one prompt each at a terminal, else one line each (in order)."""
    if len(labels) == 1 or sys.stdin.isatty():
        return [read_value(label) for label in labels]
    lines = sys.stdin.read().split("\n")
    lines = lines[:-1] if lines and lines[-1] == "" else lines
    if len(lines) != len(labels) or not all(lines):
        raise ConfigError(f"want {len(labels)} non-empty lines on stdin ({', '.join(labels)}), got "
                          f"{len(lines)}{' (one empty)' if lines and not all(lines) else ''} (nothing saved)")
    return lines


def set_value(inventory: str, vault: Vault, dotted: str) -> int:
    group, *path = dotted.split(".")
    if group not in GROUPS or not path:
        raise ConfigError(f"{dotted!r}: want GROUP.PATH, a group of {', '.join(GROUPS)} then the option path "
                          "(example: lan.apps.rental_scheduler.secret_key)")
    value = read_value(dotted)
    data = json.loads(current(vault))
    unchanged = value_at(data.get(group, {}), tuple(path)) == value
    put(data, (group, *path), value)
    if unchanged:
        print(f"secrets: {dotted} already has that value")
        return 0
    save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
    print(f"secrets: {dotted} set ({vault.cipher})")
    return 0


def recipients(vault: Vault, add: str | None, remove: str | None) -> int:
    listed = parse_recipients(vault.recipients) if vault.recipients.exists() else []
    if add is None and remove is None:
        for r in listed:
            print(f"{r.name}\t{r.key}")
        return 0
    changed = list(listed)
    if add is not None:
        new = parse_recipient(add, "--add")
        if any(r.key == new.key or r.name == new.name for r in listed):
            raise ConfigError(f"--add: {new.name} (or that key) is already a recipient")
        changed.append(new)
    if remove is not None:
        changed = [r for r in changed if r.name != remove]
        if len(changed) == len(listed) + (add is not None):
            raise ConfigError(f"--remove: no recipient named {remove!r} ({', '.join(r.name for r in listed)})")
        if not changed:
            raise ConfigError("--remove: that would leave nobody able to read the stack")
    plaintext = vault.read() if vault.exists() else None  # before the list changes: we can read it now
    write_recipients(vault.recipients, changed)
    if plaintext is not None:
        try:
            vault.write(plaintext)
        except ConfigError:
            write_recipients(vault.recipients, listed)
            raise
    print(f"secrets: {len(changed)} recipient(s): {', '.join(r.name for r in changed)}"
          + (f"; re-encrypted {vault.cipher}" if plaintext is not None else ""))
    if remove is not None:
        print(f"secrets: {remove} may have kept a copy of what they could read: rotate those secrets "
              "(docs/secrets.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.secrets", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("edit", help="$EDITOR on the decrypted stack, in memory; checked, re-encrypted")
    one = sub.add_parser("set", help="GROUP.PATH: one value from stdin")
    one.add_argument("path")
    who = sub.add_parser("recipients", help="list; --add 'KEY NAME' or --remove NAME re-encrypts")
    who.add_argument("--add", metavar="'KEY NAME'")
    who.add_argument("--remove", metavar="NAME")
    args = parser.parse_args(argv)
    try:
        vault = stack_vault(args.inventory)
        if args.action == "edit":
            return edit(args.inventory, vault)
        if args.action == "set":
            return set_value(args.inventory, vault, args.path)
        return recipients(vault, args.add, args.remove)
    except ConfigError as exc:
        print(f"secrets: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsecrets: interrupted; nothing saved", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
