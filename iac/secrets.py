"""How secrets reach a run.

A secrets file is JSON shaped like the option tree, one object per group::

    {"public": {"apps": {"chip_dashboard": {"secret_key": "..."}}}, "lan": {...}}

* Production: the file is not in the repository. CI (or the operator) writes it from its secret
  store and points ``IAC_SECRETS_FILE`` at it. A run against ``inventory.py`` without a required
  secret stops before connecting and names each missing one.
* Sandbox: ``.sandbox/<name>/secrets.json`` (git-ignored, 0600) is generated on first use with
  throwaway canary values (``CANARY-<path>-<random>``), so tests can search every output and the
  repository for them.

Which secrets exist follows from the model and the declared values (``iac.stack.secret_paths``):
an app declared in group_data brings its ``secret_key`` with it.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iac.stack import ConfigError

CANARY_PREFIX = "CANARY-"


def _get(values: Mapping[str, Any], path: tuple) -> Any:
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
                 special: Mapping[tuple, Callable[[str], str]] | None = None) -> None:
        self.path, self.generate, self.require = path, generate, require
        self.special = special or {}
        self.data: dict[str, Any] = self._read() if path and path.exists() else {}
        if path and not path.exists() and not generate:
            raise ConfigError(f"secrets file {path} does not exist (IAC_SECRETS_FILE)")

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"secrets file {self.path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"secrets file {self.path}: the top level must be an object keyed by group")
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
        for path in paths:
            value = _get(group_data, path)
            if value in (None, "") and self.generate:
                token = f"{CANARY_PREFIX}{'.'.join(path)}-{_random.token_hex(12)}"
                fn = self._special(path)
                value = fn(token) if fn else token
                _set(group_data, path, value)
                changed = True
            if value in (None, ""):
                if path in required:
                    missing.append(".".join(path))
                    value = "(not provided: offline validation)"
                else:
                    continue
            _set(values, path, value)
        if missing and self.require:
            where = f"the secrets file {self.path}" if self.path else "IAC_SECRETS_FILE (not set)"
            raise ConfigError(
                f"group {group}: missing secrets in {where}:\n  " + "\n  ".join(missing)
                + "\nWrite them to a JSON file outside the repository and set IAC_SECRETS_FILE "
                "(see README, 'Secrets')."
            )
        if changed and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2))
            os.chmod(tmp, 0o600)
            tmp.replace(self.path)
        return values


def production_secrets(required: bool) -> SecretsFile:
    """The production source: IAC_SECRETS_FILE; ``required`` when really running pyinfra."""
    path = os.environ.get("IAC_SECRETS_FILE")
    return SecretsFile(Path(path) if path else None, require=required)


def all_secret_values(data: Mapping[str, Any]) -> list[str]:
    """Every string leaf of a secrets structure (what tests search outputs for)."""
    out: list[str] = []
    for value in data.values():
        if isinstance(value, Mapping):
            out.extend(all_secret_values(value))
        elif isinstance(value, str) and value:
            out.append(value)
    return out
