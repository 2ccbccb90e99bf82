"""What a run declares on each host, gathered as its operations are declared: every file, directory
and link this repository writes, the units it enables, the accounts and keys it manages.

The baseline (operations/baseline/) holds the host against Debian's packages plus this record:
whatever else is in the places that decide how the host runs or who gets in is drift. The record
is made by the operations themselves (``iac.ops``: pyinfra's file, systemd and server operations
that note their target before they run, and this repository's own operations, decorated with
``declares``), so a file a concern starts to write is declared by writing it, never by a
second list kept by hand. A path written by an operation that notes nothing shows up as a false
alarm on a converged host (tests/integration: a converge, then drift 0), never as a silent pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# the baseline operation's name: the drift report reads its findings under it (cli/drift.py)
BASELINE_OPERATION = "Baseline: nothing beyond Debian's packages and this declaration"


@dataclass
class Declared:
    """One host's record (see the module docstring)."""

    files: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)
    enabled: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)  # paths a run removes (never declared)

    def file(self, path: str) -> None:
        if isinstance(path, str) and path.startswith("/"):
            self.files.add(path.rstrip("/") or "/")

    def directory(self, path: str) -> None:
        if isinstance(path, str) and path.startswith("/"):
            self.directories.add(path.rstrip("/") or "/")

    def unit_enabled(self, unit: str) -> None:
        name = unit if "." in unit else f"{unit}.service"
        self.enabled.add(name)


_BY_HOST: dict[str, Declared] = {}


def current() -> Declared:
    """The record of the host whose operations are being declared now."""
    from pyinfra import host

    try:
        name = host.name
    except AttributeError:  # no host's deploy is being declared (an operation's unit test)
        return Declared()
    return _BY_HOST.setdefault(name, Declared())


def of(name: str) -> Declared:
    """The record of host ``name`` (empty before its deploy is declared)."""
    return _BY_HOST.setdefault(name, Declared())


def declares(*keywords: str, files: Callable[[dict[str, Any]], Iterable[str]] | None = None) -> Callable:
    """Decorates one of this repository's operations (outside ``@operation``): each call notes the
    paths its ``keywords`` arguments name (a path, or a dict whose keys are paths), and what
    ``files(kwargs)`` returns, before pyinfra sees the call.

    Noted at the call, never in the operation's body: pyinfra runs a body while it prepares only
    when it checks for changes (a dry run), and then only up to its first command; an apply runs
    it when it executes, after the baseline's settings were made."""

    def wrap(op: Callable) -> Callable:
        @functools.wraps(op)
        def call(*args: Any, **kwargs: Any) -> Any:
            record = current()
            for keyword in keywords:
                value = kwargs.get(keyword)
                for path in (value if isinstance(value, dict) else [value]):
                    record.file(path)
            for path in files(kwargs) if files else ():
                record.file(path)
            return op(*args, **kwargs)

        return call

    return wrap
