"""Load a stack (production or sandbox): group_data values + overrides + secrets -> HostConfig.

Validation happens here, when an inventory file is loaded, so a bad value stops the run before
pyinfra connects to any host. Errors name the file that set the value, the full option path
and the fix.
"""

from __future__ import annotations

import difflib
import runpy
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pyinfra.api.exceptions import PyinfraError

from iac.model import HostConfig

REPO = Path(__file__).resolve().parent.parent
GROUP_DATA = REPO / "group_data"


class ConfigError(PyinfraError):
    """Invalid configuration; the message is meant for the operator, one problem per line.

    A PyinfraError, so the pyinfra CLI prints just this message (no traceback) and exits 1."""


@dataclass
class Layer:
    """One source of values, with a name used in error messages."""

    source: str
    values: dict[str, Any] = field(default_factory=dict)


def read_group_file(path: Path) -> dict[str, Any]:
    """Public module-level values of a group_data file, as pyinfra itself reads them."""
    values = runpy.run_path(str(path))
    return {
        k: v for k, v in values.items()
        if not k.startswith("_")
        and not isinstance(v, (types.ModuleType, types.FunctionType, type))
    }


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _lookup(values: Mapping[str, Any], path: tuple) -> bool:
    node: Any = values
    for part in path:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_mapping or in_list:
            node = node[part]
        else:
            return False
    return True


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    return [c for c in (annotation, *get_args(annotation))
            if isinstance(c, type) and issubclass(c, BaseModel)]


def secret_paths(model: type[BaseModel] = HostConfig, data: Mapping[str, Any] | None = None,
                 prefix: tuple = (), required_only: bool = False) -> list[tuple]:
    """Option paths of the SecretStr fields in the model tree.

    With ``data`` (the merged non-secret values) the walk follows it: entries of dict-valued
    options (``apps.<name>``) are included and absent optional sections are skipped. Without
    it, the schema is walked. ``required_only`` leaves out secrets that may stay unset.
    """
    paths = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = get_args(ann)
        value = data.get(name) if isinstance(data, Mapping) else None
        if ann is SecretStr or SecretStr in args:
            if not required_only or info.is_required():
                paths.append(prefix + (name,))
            continue
        if get_origin(ann) is dict and args and _submodels(args[1]):
            for key, entry in (value or {}).items() if isinstance(value, Mapping) else ():
                for sub in _submodels(args[1]):
                    paths.extend(secret_paths(sub, entry, prefix + (name, key), required_only))
            continue
        for sub in _submodels(ann):
            if data is None:
                paths.extend(secret_paths(sub, None, prefix + (name,), required_only))
            elif isinstance(value, Mapping):
                paths.extend(secret_paths(sub, value, prefix + (name,), required_only))
    return list(dict.fromkeys(paths))


def _field_info(path: tuple):
    """The pydantic FieldInfo at an option path, or None."""
    model: Any = HostConfig
    info = None
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = info.annotation
    return info


def _siblings(path: tuple) -> list[str]:
    model: Any = HostConfig
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        info = model.model_fields.get(part) if is_model else None
        if info is None:
            return []
        model = info.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _assignment(path: tuple, value: Any) -> str:
    """How a group_data file sets ``path``: ``admin = {"name": 'gts'}``."""
    node: Any = value
    for part in reversed(path[1:]):
        node = {part: node}
    return f"{path[0]} = {node!r}"


def explain(exc: ValidationError, layers: list[Layer], group: str, hostname: str) -> str:
    lines = [f"invalid configuration for host {hostname} (group {group}):"]
    for err in exc.errors():
        path = tuple(err["loc"])
        if err["type"] == "option":  # a cross-field rule names the option it is about
            path += tuple(str(err["ctx"]["at"]).split("."))
        dotted = ".".join(str(p) for p in path)
        source = next((lay.source for lay in reversed(layers) if _lookup(lay.values, path)), None)
        info = _field_info(path)
        example = None
        if info is not None and info.examples:
            example = info.examples[0]
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(path[-1]), _siblings(path), n=1)
            hint = f"did you mean '{close[0]}'?" if close else (
                f"known options here: {', '.join(_siblings(path)) or 'none'}")
            lines.append(f"  {source}: unknown option '{dotted}'; {hint} (remove or rename it)")
        elif err["type"] == "missing":
            where = f"group_data/{group}.py or group_data/all.py"
            desc = f" ({info.description.rstrip('.')})" if info is not None and info.description else ""
            fix = f", e.g. {_assignment(path, example)}" if example is not None else ""
            lines.append(f"  required option '{dotted}' has no value{desc}: set it in {where}{fix}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            fix = f"; example of a valid value: {example!r}" if example is not None and "example" not in msg else ""
            lines.append(f"  {source or 'model default'}: option '{dotted}': {msg}{fix}")
    return "\n".join(lines)


def load_layers(group: str, overrides: Mapping[str, Any] | None,
                group_data: Path = GROUP_DATA) -> list[Layer]:
    layers = []
    for name in ("all", group):
        path = group_data / f"{name}.py"
        if path.exists():
            layers.append(Layer(f"group_data/{name}.py", read_group_file(path)))
    if overrides:
        layers.append(Layer("inventory overrides", dict(overrides)))
    return layers


def build_host_config(
    group: str,
    hostname: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Any = None,
    group_data: Path = GROUP_DATA,
) -> HostConfig:
    """Validate one host's configuration; raise ConfigError with an operator-facing message.

    ``secrets`` is a source with ``provide(group, paths, required) -> nested dict`` (see
    iac.secrets); without one, required secrets get a placeholder (offline validation).
    """
    layers = load_layers(group, overrides, group_data)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.values)
    wanted = secret_paths(data=merged)
    for layer in layers:
        for path in wanted:
            if _lookup(layer.values, path):
                raise ConfigError(
                    f"{layer.source}: option '{'.'.join(path)}' is a secret and must not be kept "
                    "in the repository or inventory; remove it there and provide it through the "
                    "secrets file (see README, 'Secrets')"
                )
    required = secret_paths(data=merged, required_only=True)
    if secrets is not None:
        values = secrets.provide(group, wanted, required)
    else:
        values = {}
        for path in required:
            node = values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = "(not provided: offline validation)"
    layers.append(Layer("secrets file", values))
    merged = deep_merge(merged, values)
    try:
        return HostConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(explain(exc, layers, group, hostname)) from None


def config_secret_values(node: Any) -> list[str]:
    """Every secret value held by a validated configuration (what reports must redact)."""
    if isinstance(node, SecretStr):
        value = node.get_secret_value()
        return [value] if value else []
    if isinstance(node, BaseModel):
        return [v for name in type(node).model_fields for v in config_secret_values(getattr(node, name))]
    if isinstance(node, Mapping):
        return [v for item in node.values() for v in config_secret_values(item)]
    if isinstance(node, (list, tuple)):
        return [v for item in node for v in config_secret_values(item)]
    return []


def host_config(host: Any) -> HostConfig:
    """The validated configuration of a pyinfra host (attached by the inventory file)."""
    config = host.data.get("config")
    if not isinstance(config, HostConfig):
        raise ConfigError(
            f"host {host.name} carries no validated configuration; use inventory.py or "
            "sandbox/inventory.py, which build it from group_data/"
        )
    return config
