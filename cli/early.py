"""Arguments a command's module may act on while it is still being imported (standard library only).

`iac drift` and `iac plan` import cli/drift.py like any command; that module starts pyinfra's plan
as soon as it knows its arguments, before its slower imports (cli/drift.py, ``_early_start``).
Run as ``python -m cli.drift`` it reads them from the command line; through ``iac`` (cli/main.py)
they are left here first, for that module only, and taken once.
"""

from __future__ import annotations

_WAITING: dict[str, list[str]] = {}


def leave(module: str, argv: list[str]) -> None:
    """The arguments ``module`` will be called with (cli/main.py, before importing it)."""
    _WAITING[module] = list(argv)


def waiting(module: str) -> bool:
    return module in _WAITING


def take(module: str) -> list[str]:
    """The arguments left for ``module``, once."""
    return _WAITING.pop(module)


def forget(module: str) -> None:
    """Nothing left for ``module`` (it was imported before, so it never took them)."""
    _WAITING.pop(module, None)
