"""Typed settings files: the contract between the converge, which writes an engine's settings from
the model, and the engine, which reads them on the host (the engines' one implementation).

A settings class is a frozen dataclass whose fields are typed (str, int, bool, Path, lists,
dicts, nested settings, ``X | None``). ``load`` refuses an unknown, missing or mistyped key with
the path of the key, never half-reads a file; ``dump`` writes what ``load`` reads back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A settings file this engine cannot take as it is (another version of the repository wrote it)."""


def load(cls: type[T], data: Any, at: str = "") -> T:
    """``data`` (parsed JSON) as ``cls``, checked key by key."""
    if not isinstance(data, dict):
        raise SettingsError(f"{at or 'settings'}: an object is expected")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if unknown := sorted(set(data) - names):
        raise SettingsError(f"{at or 'settings'}: unknown key(s) {', '.join(unknown)} (written by another version "
                            "of the repo?)")
    hints = typing.get_type_hints(cls)
    values = {k: _value(hints[k], v, f"{at}.{k}" if at else k) for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as e:  # a required key missing
        raise SettingsError(f"{at or 'settings'}: {e}") from None


def dump(obj: Any) -> Any:
    """The JSON-able form of a settings object (paths as strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    return obj


def _value(hint: Any, value: Any, at: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _value(arg, value, at)
            except SettingsError as e:
                errors.append(str(e))
        raise SettingsError(errors[0] if errors else f"{at}: {value!r} is not allowed")
    if origin is list:
        if not isinstance(value, list):
            raise SettingsError(f"{at}: a list is expected, not {value!r}")
        return [_value(args[0], v, f"{at}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{at}: an object is expected, not {value!r}")
        return {_value(args[0], k, at): _value(args[1], v, f"{at}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return load(hint, value, at)
    if hint is Path:
        if not isinstance(value, str):
            raise SettingsError(f"{at}: a path is expected, not {value!r}")
        return Path(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingsError(f"{at}: a whole number is expected, not {value!r}")
    if hint in (str, bool) and not isinstance(value, hint):
        raise SettingsError(f"{at}: {hint.__name__} expected, not {value!r}")
    return value
