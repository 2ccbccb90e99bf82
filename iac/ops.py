"""pyinfra's operations as this repository's concerns call them: each one that writes a file,
directory or link, or enables a unit, first notes its target in the host's record of what is
declared (``iac.declared``), then is pyinfra's own operation, unchanged.

    from iac.ops import files, server, systemd   # instead of pyinfra.operations

Nothing of pyinfra is patched: these are pyinfra's public operations, called with the same
arguments (tests/unit/test_layout.py holds operations/ to importing them from here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyinfra.operations import apt, postgres, server  # noqa: F401 (re-exported as they are)
from pyinfra.operations import files as _files
from pyinfra.operations import systemd as _systemd

from iac import declared

# operation -> (keyword of its target, position of that argument, what the target is)
FILE_TARGETS: dict[str, tuple[str, int, str]] = {
    "put": ("dest", 1, "file"), "template": ("dest", 1, "file"), "download": ("dest", 1, "file"),
    "file": ("path", 0, "file"), "link": ("path", 0, "file"), "line": ("path", 0, "file"),
    "replace": ("path", 0, "file"), "block": ("path", 0, "file"), "directory": ("path", 0, "directory"),
}


def _target(args: tuple, kwargs: dict, keyword: str, position: int) -> Any:
    return kwargs[keyword] if keyword in kwargs else (args[position] if len(args) > position else None)


def _noting(op: Callable, keyword: str, position: int, kind: str) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        target = _target(args, kwargs, keyword, position)
        record = declared.current()
        if kwargs.get("present", True) is False:
            record.absent.add(str(target))
        elif kind == "directory":
            record.directory(target)
        else:
            record.file(target)
        return op(*args, **kwargs)

    call.__doc__, call.__name__ = op.__doc__, getattr(op, "__name__", "operation")
    return call


class _Files:
    """``pyinfra.operations.files``, each writing operation noting its target first."""

    def __getattr__(self, name: str) -> Any:
        op = getattr(_files, name)
        if name not in FILE_TARGETS:
            return op
        return _noting(op, *FILE_TARGETS[name])


class _Systemd:
    """``pyinfra.operations.systemd``; ``service(..., enabled=True)`` notes the unit as enabled."""

    def __getattr__(self, name: str) -> Any:
        op = getattr(_systemd, name)
        if name != "service":
            return op

        def service(*args: Any, **kwargs: Any) -> Any:
            unit = _target(args, kwargs, "service", 0)
            if kwargs.get("enabled") is True and isinstance(unit, str):
                declared.current().unit_enabled(unit)
            return op(*args, **kwargs)

        return service


files = _Files()
systemd = _Systemd()
