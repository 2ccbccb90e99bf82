"""A fact as a host asks for it (class, arguments, how its command runs), named by import path:
what the batch (fact_batch.py), the shared commands (shared_facts.py) and the records share."""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from typing import Any

from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.command import MaskString
from pyinfra.api.facts import FactBase

from iac.pyinfra_ext import fact_policy

# arguments that may carry a secret: such a fact is cached in memory but never recorded or batched
SECRET_ARGUMENTS = ("password", "secret", "token", "salt", "key_data")


def fact_path(cls: type[FactBase]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def fact_class(path: str) -> type[FactBase]:
    module, _, name = path.partition(":")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, FactBase)):
        raise TypeError(f"{path} is not a fact")
    return cls


def _plain(value: Any) -> bool:
    """JSON-able without loss of meaning, and no masked (secret) string anywhere inside."""
    if isinstance(value, MaskString):
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


@dataclass(frozen=True)
class FactCall:
    """One fact as a host asks for it: class, arguments, and how its command is run."""

    fact: str
    kwargs: dict
    executor: dict

    @functools.cached_property
    def key(self) -> str:
        return json.dumps([self.fact, self.kwargs, self.executor], sort_keys=True)

    @property
    def recordable(self) -> bool:
        return not any(word in name.lower() for name, value in self.kwargs.items() if value not in (None, "")
                       for word in SECRET_ARGUMENTS)

    @property
    def allowed(self) -> bool:
        """Recordable, and what the next run's read_record accepts (iac/pyinfra_ext/fact_policy.py): a call whose
        argument has another shape (a path with a space) is fetched the normal way each run."""
        return self.recordable and fact_policy.refusal(self.fact, self.kwargs, self.executor) is None

    def as_json(self) -> dict:
        return {"fact": self.fact, "kwargs": self.kwargs, "executor": self.executor}

    @classmethod
    def describe(cls, fact: type[FactBase], fact_kwargs: dict, global_kwargs: dict) -> FactCall | None:
        """The call, or None when it cannot be keyed safely (then pyinfra fetches it as always)."""
        kwargs = {k: v for k, v in fact_kwargs.items() if k != "self"}
        executor = {k: global_kwargs[k] for k in CONNECTOR_ARGUMENT_KEYS
                    if global_kwargs.get(k) not in (None, {}, False)}
        if fact.shell_executable:
            executor["_shell_executable"] = fact.shell_executable
        if any(k in executor for k in ("_sudo_password", "_su_password", "_stdin", "_retry_until", "_env")):
            return None
        if not (_plain(kwargs) and _plain(executor)):
            return None
        # tuples and lists key alike, as they would after a JSON round trip
        return cls(fact_path(fact), json.loads(json.dumps(kwargs)), json.loads(json.dumps(executor)))


def split_lines(data: bytes) -> list[str]:
    """Lines as pyinfra reads a command's stdout: split on newline, a final partial line kept."""
    if not data:
        return []
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return [p.decode("utf-8", errors="replace") for p in pieces]
