"""Secrets at rest: one age-encrypted file per stack, to the recipients the stack lists.

A stack's secrets are two files side by side:

* ``<name>.age``: the secrets file's JSON (``stack/secrets.py``), encrypted with age
  (https://age-encryption.org, Debian's ``age``) in its ASCII armour, safe to commit;
* ``<name>.recipients``: who can read it, one per line, ``<public key> <who>``: an age key
  (``age1...``, from ``age-keygen``) or an SSH ed25519 key (``ssh-ed25519 AAAA...``, an
  operator's own), then a name (``alice``, ``ci``). ``#`` starts a comment.

Production's are ``secrets/production.age`` and ``secrets/production.recipients`` in the
repository; the sandbox's are in its own directory (``.sandbox/<name>/``) with the identity it
made for itself. Decrypting needs one identity (a private key) that matches a recipient:
``IAC_AGE_IDENTITY`` (one or more files, ``:``-separated), else ``~/.config/iac/age-identity.txt``
and ``~/.ssh/id_ed25519`` where they exist.

Plaintext never touches a disk here: age reads it from a pipe and writes the ciphertext to one;
only public keys and file names are on age's command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from iac.errors import ConfigError

AGE_KEY = re.compile(r"age1[02-9ac-hj-np-z]{58}")
SSH_KEY = re.compile(r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]{48}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
DEFAULT_IDENTITIES = ("~/.config/iac/age-identity.txt", "~/.ssh/id_ed25519")
INSTALL_HINT = "install it: apt install age (Debian 12 and 13 have it)"


@dataclass(frozen=True)
class Recipient:
    """One reader of a stack's secrets: a public key and who holds its private half."""

    key: str
    name: str

    def line(self) -> str:
        return f"{self.key} {self.name}"


def _age() -> str:
    program = shutil.which("age")
    if program is None:
        raise ConfigError(f"age is not installed; {INSTALL_HINT}")
    return program


def parse_recipients(path: Path) -> list[Recipient]:
    """The recipients ``path`` lists; a malformed line is refused, naming the file, line and fix."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist: add a first recipient "
                          "(`make secrets-recipients ADD='age1... you'`, from `age-keygen -y`)")
    out: list[Recipient] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        recipient = parse_recipient(text, f"{path}:{number}")
        if any(r.key == recipient.key or r.name == recipient.name for r in out):
            raise ConfigError(f"{path}:{number}: {recipient.name} is listed twice (a key or a name): keep one line")
        out.append(recipient)
    return out


def parse_recipient(text: str, where: str) -> Recipient:
    """``<public key> <name>`` -> Recipient, or a ConfigError naming ``where`` and the shape wanted."""
    parts = text.split()
    key, name = (" ".join(parts[:2]), parts[2:]) if parts and parts[0] == "ssh-ed25519" else (parts[0], parts[1:])
    if not (AGE_KEY.fullmatch(key) or SSH_KEY.fullmatch(key)):
        raise ConfigError(f"{where}: not a recipient: want `age1...` (age-keygen -y KEYFILE) or `ssh-ed25519 AAAA...`, "
                          "then a name")
    if len(name) != 1 or not NAME.fullmatch(name[0]):
        raise ConfigError(f"{where}: after the key, one name (letters, digits, _ . @ -), e.g. `alice` or `ci`")
    return Recipient(key, name[0])


def write_recipients(path: Path, recipients: list[Recipient]) -> None:
    header = ("# Managed by this repo (stack/vault.py): who can read this stack's secrets.\n"
              "# One per line: <age1... or ssh-ed25519 AAAA...> <name>. Change with `make secrets-recipients`,\n"
              "# which re-encrypts the stack; a removed reader may have kept a copy: rotate what they saw.\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + "".join(r.line() + "\n" for r in recipients))
    tmp.replace(path)


def identities() -> list[Path]:
    """The private keys tried for decryption: ``IAC_AGE_IDENTITY``, else the defaults that exist."""
    given = os.environ.get("IAC_AGE_IDENTITY")
    if given:
        return [Path(p) for p in given.split(":") if p]
    return [p for p in (Path(d).expanduser() for d in DEFAULT_IDENTITIES) if p.exists()]


def decrypt(path: Path, keys: list[Path] | None = None) -> bytes:
    """The plaintext of ``path``, decrypted with the first of ``keys`` (default ``identities()``)
    that matches one of its recipients; kept in memory."""
    keys = [k for k in (identities() if keys is None else keys) if k.exists()]
    if not keys:
        raise ConfigError(f"cannot decrypt {path}: no identity: set IAC_AGE_IDENTITY to your age key file "
                          f"(or keep it at {DEFAULT_IDENTITIES[0]})")
    args = [_age(), "--decrypt"]
    for key in keys:
        args += ["--identity", str(key)]
    run = subprocess.run([*args, str(path)], capture_output=True, check=False, stdin=subprocess.DEVNULL)
    if run.returncode != 0:
        said = run.stderr.decode(errors="replace").strip().splitlines()
        reason = next((line.removeprefix("age: error: ") for line in said if "error" in line), "age failed")
        raise ConfigError(f"cannot decrypt {path} with {', '.join(map(str, keys))}: {reason} "
                          "(is your key one of the stack's recipients? `make secrets-recipients` lists them)")
    return run.stdout


def encrypt(plaintext: bytes, recipients: list[Recipient], dest: Path) -> None:
    """Write ``plaintext`` to ``dest`` encrypted to every one of ``recipients`` (ASCII armour),
    replacing the old file at once (a reader sees the old or the new one, never half)."""
    if not recipients:
        raise ConfigError(f"{dest}: no recipients: nobody could read it; add one first")
    args = [_age(), "--encrypt", "--armor"]
    for r in recipients:
        args += ["--recipient", r.key]
    run = subprocess.run(args, input=plaintext, capture_output=True, check=False)
    if run.returncode != 0:
        raise ConfigError(f"age could not encrypt {dest}: {run.stderr.decode(errors='replace').strip()}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(run.stdout)
    tmp.replace(dest)


# cipher path -> a candidate plaintext, held in memory while `iac secrets` has the stack's
# inventory validate it (cli/secrets.py): reads return it, writes replace it, no file changes
PENDING: dict[Path, bytes] = {}


# the last decrypted stack of this process, keyed by Vault._seen(): a changed file is read again
_READ: dict[tuple, bytes] = {}


@dataclass(frozen=True)
class Vault:
    """A stack's encrypted secrets: the ciphertext, its recipients file, and the identities that
    open it (None: ``identities()``, the operator's)."""

    cipher: Path
    recipients: Path
    keys: tuple[Path, ...] | None = None

    def exists(self) -> bool:
        return self.cipher in PENDING or self.cipher.exists()

    def _seen(self) -> tuple:
        """What a decrypted copy held in memory was read from: the file as it is, and who read it."""
        stat = self.cipher.stat()
        return (self.cipher, stat.st_mtime_ns, stat.st_size, stat.st_ino, self.keys,
                os.environ.get("IAC_AGE_IDENTITY"))

    def read(self) -> bytes:
        if self.cipher in PENDING:
            return PENDING[self.cipher]
        seen = self._seen()
        if seen in _READ:  # one decryption per process while the file is unchanged (an inventory reads twice)
            return _READ[seen]
        if self.keys is None:
            plaintext = decrypt(self.cipher)
        else:
            # a stack with its own identity (the sandbox's) is also read with IAC_AGE_IDENTITY's, when
            # set: how the CI job's key is tried on the sandbox (tests/integration/test_secrets_stack.py)
            given = identities() if os.environ.get("IAC_AGE_IDENTITY") else []
            plaintext = decrypt(self.cipher, [*given, *self.keys])
        _READ.clear()
        _READ[seen] = plaintext
        return plaintext

    def write(self, plaintext: bytes) -> None:
        if self.cipher in PENDING:
            PENDING[self.cipher] = plaintext
            return
        encrypt(plaintext, parse_recipients(self.recipients), self.cipher)
        _READ.clear()


def own_vault(directory: Path) -> Vault:
    """A generated stack's vault in ``directory`` (the sandbox's): ``secrets.age``, encrypted to
    the identity it made for itself (``age-identity.txt``, 0600) and whoever else it lists."""
    identity, recipients = directory / "age-identity.txt", directory / "secrets.recipients"
    cipher = directory / "secrets.age"
    if not cipher.exists() and not (identity.exists() and recipients.exists()):
        # a new stack: its identity and first recipient (an existing stack's lost identity is never
        # replaced: a new one could not read it; IAC_AGE_IDENTITY names another of its readers)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        own = new_identity(identity)
        if not recipients.exists():
            write_recipients(recipients, [own])
    return Vault(cipher, recipients, (identity,))


def new_identity(path: Path, name: str = "sandbox") -> Recipient:
    """The age identity at ``path`` (made once, 0600, never replaced) as a recipient ``name``."""
    program = shutil.which("age-keygen")
    if program is None:
        raise ConfigError(f"age-keygen is not installed; {INSTALL_HINT}")
    if not path.exists():
        old = os.umask(0o077)
        try:
            subprocess.run([program, "-o", str(path)], capture_output=True, check=True)
        finally:
            os.umask(old)
    os.chmod(path, 0o600)
    public = subprocess.run([program, "-y", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    return Recipient(public, name)
