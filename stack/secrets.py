"""How secrets reach a run.

A secrets file is JSON shaped like the option tree, one object per group::

    {"public": {"apps": {"chip_dashboard": {"secret_key": "..."}}}, "lan": {...}}

* Production: the file is not in the repository. CI (or the operator) writes it from its secret
  store and points ``IAC_SECRETS_FILE`` at it. A run against ``inventory.py`` without a required
  secret stops before connecting and names each missing one.
* Sandbox: ``.sandbox/<name>/secrets.json`` (git-ignored, 0600) is generated on first use with
  throwaway canary values (``CANARY-<path>-<random>``), so tests can search every output and the
  repository for them.

Which secrets exist follows from the model and the declared values (``stack.load.secret_paths``):
an app declared in group_data brings its ``secret_key`` with it.
"""

from __future__ import annotations

import difflib
import json
import os
import secrets as _random
import stat
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iac import piped
from iac.errors import ConfigError
from iac.repo import REPO
from iac.sudo import SECRET_PATH as SUDO_SECRET_PATH
from stack.load import GROUPS, option_extra, placeholder
from stack.vault import Vault

CANARY_PREFIX = "CANARY-"
# secrets of how a group's hosts are reached, not options of the model: the sudo password (iac/sudo.py)
CONNECTION_SECRETS = (SUDO_SECRET_PATH,)
MIN_CONNECTION_SECRET = 8  # characters (a model secret's least length is the model's, iac/values.py secret())


def value_at(values: Mapping[str, Any], path: tuple) -> Any:
    """The value at ``path`` (a tuple of keys) in nested mappings, or None where a key is missing."""
    node: Any = values
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(values: dict[str, Any], path: tuple, value: Any) -> None:
    node = values
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


class SecretsFile:
    """A JSON secrets file.

    + path: the file (None: no file, every secret is missing)
    + generate: create missing secrets as canaries and save them (sandbox only)
    + require: a missing required secret is an error; otherwise a placeholder (offline checks)
    + special: option path (with ``*`` for a dict key) -> function of a canary token, for
      secrets that need a shape, such as a webhook URL pointing at the sandbox's stand-in
    """

    def __init__(self, path: Path | None, generate: bool = False, require: bool = True,
                 special: Mapping[tuple, Callable[[str], str]] | None = None, vault: Vault | None = None) -> None:
        if vault is not None:
            path = vault.cipher
        elif path is not None and path.suffix == ".age":  # IAC_SECRETS_FILE naming an encrypted stack
            path = path.resolve() if path.exists() else path
            vault = Vault(path, path.with_suffix(".recipients"))
        self.path, self.generate, self.require, self.vault = path, generate, require, vault
        self.asked: dict[str, list[tuple]] = {}  # group -> the secret paths its configuration uses
        self.special = special or {}
        self.data: dict[str, Any] = self._read() if path and path.exists() else {}
        if path and not path.exists() and not generate:
            raise ConfigError(f"secrets file {path} does not exist (IAC_SECRETS_FILE)")

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        if self.vault is not None:
            text = self.vault.read().decode("utf-8", errors="strict")
        else:
            refuse_readable_by_others(self.path)
            text = piped.read(str(self.path)).decode("utf-8")  # a pipe is read once (iac/piped.py)
        return self.parse(text)

    def parse(self, text: str) -> dict[str, Any]:
        """The JSON text of a secrets file, checked (an object of known groups)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"secrets file {self.path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"secrets file {self.path}: the top level must be an object keyed by group")
        for group in data:
            if group not in GROUPS:
                close = difflib.get_close_matches(group, list(GROUPS), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"groups: {', '.join(GROUPS)}"
                raise ConfigError(f"secrets file {self.path}: unknown group '{group}'; {hint} (rename or remove it)")
        return data

    def _special(self, path: tuple) -> Callable[[str], str] | None:
        for pattern, fn in self.special.items():
            if len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path, strict=True)):
                return fn
        return None

    def provide(self, group: str, paths: list[tuple], required: list[tuple]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        missing = []
        changed = False
        group_data = self.data.setdefault(group, {}) if self.generate else self.data.get(group, {})
        self.asked[group] = list(paths)
        if not self.generate:
            self._refuse_unknown(group, group_data, paths)
        for path in paths:
            if path[-1] == "*":  # a map of secrets: every entry the file has
                entries = value_at(group_data, path[:-1])
                for key, value in (entries.items() if isinstance(entries, Mapping) else ()):
                    _set(values, path[:-1] + (key,), value)
                continue
            value = value_at(group_data, path)
            if value in (None, "") and self.generate:
                token = f"{CANARY_PREFIX}{'.'.join(path)}-{_random.token_hex(12)}"
                fn = self._special(path) or _SHAPED_CANARY.get(option_extra(path, "canary"))
                value = fn(token) if fn else token
                _set(group_data, path, value)
                changed = True
            if value in (None, ""):
                if path in required:
                    missing.append(".".join(path))
                    value = placeholder(path)
                else:
                    continue
            _set(values, path, value)
        if missing and self.require:
            where = f"the secrets file {self.path}" if self.path else "IAC_SECRETS_FILE (not set)"
            raise ConfigError(
                f"group {group}: missing secrets in {where}:\n  " + "\n  ".join(missing)
                + "\nAdd them to the stack's encrypted secrets (`make secrets-edit INVENTORY=...`, or "
                "`make secrets-set KEY=group.path`), or to the file IAC_SECRETS_FILE names (see docs/secrets.md)."
            )
        if changed and self.path:
            self._save()
        return values


    def own_secret(self, group: str, path: tuple, shape: Callable[[str], str] | None = None) -> str:
        """A secret only this (generated, non-production) stack keeps, outside the option tree:
        the stored value, or a new canary (``CANARY-<path>-<random>``, passed through ``shape``)
        saved first. The sandbox keeps its admin's sudo password this way (sandbox/inventory.py)."""
        if not self.generate:
            raise ConfigError("only a generated (sandbox) secrets file keeps secrets of its own")
        value = value_at(self.data.get(group, {}), path)
        if isinstance(value, str) and value:
            return value
        token = f"{CANARY_PREFIX}{'.'.join(path)}-{_random.token_hex(12)}"
        value = shape(token) if shape else token
        self.keep(group, path, value)
        return value

    def connection_secret(self, group: str, path: tuple) -> str | None:
        """A secret of how a group's hosts are reached (``CONNECTION_SECRETS``, outside the option
        tree), or None when the file has none."""
        if path not in CONNECTION_SECRETS:
            known = ", ".join(".".join(p) for p in CONNECTION_SECRETS)
            raise ConfigError(f"{'.'.join(path)} is not a connection secret ({known})")
        value = value_at(self.data.get(group, {}), path)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"secrets file {self.path}: {group}.{'.'.join(path)} must be a string")
        if value and len(value) < MIN_CONNECTION_SECRET:
            raise ConfigError(f"secrets file {self.path}: {group}.{'.'.join(path)} has {len(value)} characters: "
                              f"give at least {MIN_CONNECTION_SECRET} (change it on the host with `passwd`, then here)")
        return value or None

    def where(self, group: str, path: tuple) -> str:
        """Where a secret is looked for, for messages: ``lan.connection.sudo_password in <file>``."""
        return f"{group}.{'.'.join(path)} in " + (f"the secrets file {self.path}" if self.path else
                                                  "the secrets file (IAC_SECRETS_FILE is not set)")

    def keep(self, group: str, path: tuple, value: str) -> None:
        """Store ``value`` at ``path`` of ``group`` (a generated stack only: a value it derives,
        such as a hash of its own secret), saving the file if that changes it."""
        if not self.generate:
            raise ConfigError("only a generated (sandbox) secrets file is written by the stack")
        group_data = self.data.setdefault(group, {})
        if value_at(group_data, path) != value:
            _set(group_data, path, value)
            if self.path:
                self._save()

    def _save(self) -> None:
        """Write the file (0600 before any secret is in it; or encrypted to the stack's recipients),
        replacing the old one at once."""
        assert self.path is not None
        if self.vault is not None:
            self.vault.write((json.dumps(self.data, indent=2) + "\n").encode())
        else:
            write_private(self.path, json.dumps(self.data, indent=2))

    def refuse_unknown(self, changed: set[tuple] | None = None) -> None:
        """Refuse a key no group's configuration used while it loaded; with ``changed`` ((group,
        *path) leaves), only among those: an edit adds no unused key, while a generated stack may
        keep an earlier configuration's (a test's app) that the edit did not touch."""
        for group, group_data in self.data.items():
            if not isinstance(group_data, Mapping):
                self._refuse_unknown(group, group_data, [])
            kept = {leaf for leaf in _leaf_paths(group_data) if changed is not None and (group, *leaf) not in changed}
            self._refuse_unknown(group, _without(group_data, kept), self.asked.get(group, []))

    def _refuse_unknown(self, group: str, group_data: Any, paths: list[tuple]) -> None:
        """A key the configuration does not use is a typo or a leftover: refused, with the closest
        known option, so that a misspelt secret never silently leaves a default or the old value."""
        if not isinstance(group_data, Mapping):
            raise ConfigError(f"secrets file {self.path}: group {group!r} must be an object of options")
        paths = [*paths, *CONNECTION_SECRETS]
        known = [".".join(p) for p in paths]
        for leaf in _leaf_paths(group_data):
            dotted = ".".join(leaf)
            if not any(_matches(leaf, p) for p in paths):
                close = difflib.get_close_matches(dotted, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else (
                    f"secrets this configuration uses: {', '.join(known) or 'none'}")
                raise ConfigError(
                    f"secrets file {self.path}: group {group}: unknown secret '{dotted}' (not used by the declared "
                    f"configuration); {hint} (rename or remove it)")


def _without(values: Mapping[str, Any], leaves: set[tuple], prefix: tuple = ()) -> dict[str, Any]:
    """``values`` without the given leaf paths (and the branches left empty)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            inner = _without(value, leaves, prefix + (key,))
            if inner:
                out[key] = inner
        elif prefix + (key,) not in leaves:
            out[key] = value
    return out


def changed_leaves(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[tuple]:
    """(group, *path) of every leaf of ``after`` that ``before`` lacks or holds another value at."""
    return {(group, *leaf) for group, data in after.items() if isinstance(data, Mapping)
            for leaf in _leaf_paths(data)
            if value_at(before.get(group, {}) if isinstance(before.get(group), Mapping) else {}, leaf)
            != value_at(data, leaf)}


def _leaf_paths(values: Mapping[str, Any], prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.extend(_leaf_paths(value, prefix + (key,)))
        else:
            out.append(prefix + (key,))
    return out


def _matches(leaf: tuple, path: tuple) -> bool:
    if path[-1] == "*":
        return len(leaf) == len(path) and leaf[:-1] == path[:-1]
    return leaf == path


def crypt_sha512(password: str, salt: str) -> str:
    """The SHA-512 crypt(3) hash of ``password`` with ``salt`` (at most 16 characters of
    ``[A-Za-z0-9./]``): the same inputs give the same hash. The password goes on openssl's stdin,
    never on its command line."""
    if "\n" in password:
        raise ConfigError("a password for crypt(3) cannot hold a newline")
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password, text=True,
                         capture_output=True, check=True)
    return out.stdout.strip()


def _crypt_canary(token: str) -> str:
    """A real SHA-512 crypt(3) hash of the canary token (the model refuses anything else), with
    the salt carrying the token's random part so that searches can still find it."""
    return crypt_sha512(token, "canary" + token.rsplit("-", 1)[-1][:10])


_SHAPED_CANARY: dict[str, Callable[[str], str]] = {"crypt": _crypt_canary}


def refuse_readable_by_others(path: Path) -> None:
    """A secrets file that is a plain file must be its owner's alone (a pipe, ``<(pass show ...)``,
    has no such mode and is taken as it is)."""
    st = path.stat()
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        raise ConfigError(f"secrets file {path} can be read or written by others (mode {stat.S_IMODE(st.st_mode):04o}):"
                          f" `chmod 600 {path}`, and check who read it since; the file is refused until then")


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in a file that is 0600 from its first byte, whatever the umask.

    The new file is created beside it exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``: never an
    existing file or a planted link) with mode 0600, written, then renamed over ``path``: no reader
    ever sees it half written or readable by others (writing then ``chmod`` left a moment at 0644).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{_random.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only take bits away; this makes the mode exact
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1  # closed by the with block from here on
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def production_vault() -> Vault:
    """Production's encrypted secrets, in the repository (stack/vault.py)."""
    return Vault(REPO / "secrets" / "production.age", REPO / "secrets" / "production.recipients")


def production_secrets(required: bool) -> SecretsFile:
    """The production source, ``required`` when really running pyinfra: the file IAC_SECRETS_FILE
    names (plain JSON, a pipe, or an ``.age`` file), else the repository's ``secrets/production.age``
    when it exists."""
    path = os.environ.get("IAC_SECRETS_FILE")
    if path:
        return SecretsFile(Path(path), require=required)
    vault = production_vault()
    if vault.exists():
        return SecretsFile(None, require=required, vault=vault)
    return SecretsFile(None, require=required)


def all_secret_values(data: Mapping[str, Any]) -> list[str]:
    """Every string leaf of a secrets structure (what tests search outputs for)."""
    out: list[str] = []
    for value in data.values():
        if isinstance(value, Mapping):
            out.extend(all_secret_values(value))
        elif isinstance(value, str) and value:
            out.append(value)
    return out
