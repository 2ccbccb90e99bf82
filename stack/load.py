"""Load a stack (production or sandbox): group_data values + overrides + secrets -> HostConfig.

Validation happens here, when an inventory file is loaded, so a bad value stops the run before
pyinfra connects to any host. Errors name the file that set the value, the full option path
and the fix.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import runpy
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from iac.errors import ConfigError
from iac.repo import GROUP_DATA
from iac.values import HOSTNAME_RE, OFFLINE_PLACEHOLDER, is_secret
from operations.host import HostConfig

# The groups of every stack: group_data/<group>.py holds a group's values and, under ``hosts``, its
# hosts (inventory name -> the values that differ per host); all.py holds values shared by every
# group. No other file is read.
GROUPS: tuple[str, ...] = ("public", "lan")

# the name in a group_data file that declares the group's hosts (not an option of the model)
HOSTS_KEY = "hosts"
# the name in a group_data file that lists what an operator must confirm on the server before the
# first production run: option path -> how to confirm it (`make preflight` fails while one is open)
CONFIRM_KEY = "confirm"
CONFIRM_EXAMPLE = "confirm = {'backups.local.disk_uuid': 'blkid /dev/sdb1 on the server'}"


@dataclass
class Layer:
    """One source of values, with a name used in error messages."""

    source: str
    values: dict[str, Any] = field(default_factory=dict)


def read_group_file(path: Path) -> dict[str, Any]:
    """Module-level values of a group_data file, as pyinfra itself reads them.

    pyinfra passes every name of a group_data file to the group's hosts; a name starting with
    ``_`` is one of its global arguments (``_sudo``, ``_ignore_errors``) and would silently apply
    to every operation on those hosts. Such names are refused here, before pyinfra sees them."""
    try:
        values = runpy.run_path(str(path))
    except SyntaxError as e:  # named with where and what, as an error of the file, not a traceback
        raise ConfigError(f"group_data/{path.name}, line {e.lineno}: {e.msg} (a Python syntax error; the file is "
                          "Python: check brackets, quotes and commas there)") from None
    out = {}
    for key, value in values.items():
        if key.startswith("__") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        if key.startswith("_"):
            raise ConfigError(
                f"group_data/{path.name}: '{key}' starts with '_': pyinfra would apply it to every operation of "
                f"the group as a global argument; settings belong in the model's options (operations/host.py): remove "
                f"it, or rename it if it is a helper value (example: host = {{'hostname': 'gts-server'}})")
        out[key] = value
    return out


def check_group_files(group_data: Path = GROUP_DATA) -> None:
    """Only all.py and one file per group are read; any other file is a typo (publc.py) that
    pyinfra would silently turn into an empty group."""
    known = ["all", *GROUPS]
    for path in sorted(group_data.glob("*")):
        if path.name.startswith(".") or path.name == "__pycache__":
            continue
        if path.suffix != ".py" or path.stem not in known:
            close = difflib.get_close_matches(path.stem, known, n=1)
            hint = f"did you mean group_data/{close[0]}.py?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"group_data/{path.name}: not a group of this repository ({hint}); rename or "
                              f"remove it (groups: {', '.join(f'{k}.py' for k in known)})")


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
        if get_origin(ann) is dict and args and is_secret(args[1]):
            # a map of secrets (apps.<name>.secret_env): its keys are whatever the secrets file holds
            if not required_only:
                paths.append(prefix + (name, "*"))
            continue
        if is_secret(ann) or any(is_secret(a) for a in args):
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


def _walk(path: tuple) -> tuple[Any, Any]:
    """(annotation, FieldInfo) at an option path of HostConfig, through sections, optional
    sections and maps of sections (``apps.<name>.nginx``); (None, None) if the path leaves the model."""
    ann: Any = HostConfig
    info = None
    for part in path:
        if isinstance(part, int):  # a list index: the list's item type
            items = [a for a in get_args(ann) if get_origin(a) is list] if get_origin(ann) is not list else [ann]
            ann = get_args(items[0])[0] if items and get_args(items[0]) else None
            continue
        model = next((m for m in _submodels(ann) if part in m.model_fields), None)
        maps = [a for a in (ann, *get_args(ann)) if get_origin(a) is dict]
        if model is not None:
            info = model.model_fields[part]
            ann = info.annotation
        elif maps and len(get_args(maps[0])) == 2:
            ann, info = get_args(maps[0])[1], None
        else:
            return None, None
    return ann, info


def _field_info(path: tuple):
    """The pydantic FieldInfo at an option path, or None."""
    return _walk(path)[1]


def option_extra(path: tuple, key: str, default: str = "") -> str:
    """A value the model attaches to an option (``json_schema_extra``), e.g. its placeholder."""
    info = _field_info(path)
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get(key, default))


def placeholder(path: tuple) -> str:
    """Stand-in for a missing secret in an offline validation, shaped as the option needs."""
    return option_extra(path, "placeholder", OFFLINE_PLACEHOLDER)


def _siblings(path: tuple) -> list[str]:
    """The options known next to the last part of ``path`` (for "did you mean")."""
    ann, _ = _walk(path[:-1])
    models = _submodels(ann) if ann is not None else []
    return list(dict.fromkeys(name for m in models for name in m.model_fields))


def _assignment(path: tuple, value: Any) -> str:
    """How a group_data file sets ``path``: ``admin = {"name": 'gts'}``."""
    node: Any = value
    for part in reversed(path[1:]):
        node = {part: node}
    return f"{path[0]} = {node!r}"


def explain(exc: ValidationError, layers: list[Layer], group: str, hostname: str) -> str:
    lines = [f"invalid configuration for host {hostname} (group {group}):"]
    for err in exc.errors():
        path, is_key = _option_path(tuple(err["loc"]))
        if err["type"] == "option":  # a cross-field rule names the option it is about
            path += tuple(int(p) if p.isdigit() else p for p in str(err["ctx"]["at"]).split("."))
        dotted = ".".join(str(p) for p in path)
        source = next((lay.source for lay in reversed(layers) if _lookup(lay.values, path)), None)
        info = _field_info(path)
        example = None
        if info is not None and info.examples:
            example = info.examples[0]
        if is_key:
            # the file that introduced the name (the secrets layer only follows the declared apps)
            source = next((lay.source for lay in layers if lay.source != "secrets file"
                           and _lookup(lay.values, path)), source)
            parent = _field_info(path[:-1])
            keys = parent.examples[0] if parent is not None and parent.examples else None
            msg = err["msg"].removeprefix("Value error, ")
            fix = (f" (example: {next(iter(keys))!r})"
                   if isinstance(keys, dict) and keys and "example" not in msg else "")
            lines.append(f"  {source}: '{path[-1]}' under '{'.'.join(map(str, path[:-1]))}' is not a valid name: "
                         f"{msg}{fix}")
        elif err["type"] == "string_pattern_mismatch":
            shown = "the value" if info is not None and "SECRET" in (info.description or "") else repr(err["input"])
            lines.append(f"  {source or 'model default'}: option '{dotted}': {shown} is not valid"
                         + (f"; example of a valid value: {example!r}" if example is not None else ""))
        elif err["type"] == "extra_forbidden":
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
            told = "example" in msg or "e.g." in msg
            fix = f"; example of a valid value: {example!r}" if example is not None and not told else ""
            lines.append(f"  {source or 'model default'}: option '{dotted}': {msg}{fix}")
    return "\n".join(lines)


def _option_path(loc: tuple) -> tuple[tuple, bool]:
    """The option path of a pydantic error location, and whether the error is about a map's key.

    pydantic adds parts that are not options: ``[key]`` after a map key it refused, and the tag
    of a discriminated union (``database.sqlite.path``)."""
    is_key = bool(loc) and loc[-1] == "[key]"
    out: tuple = ()
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, str) and _walk(out + (part,)) == (None, None) and _walk(out)[0] is not None \
                and part in ("sqlite", "postgresql"):
            continue
        out += (part,)
    return out, is_key


HOSTS_EXAMPLE = f"example: {HOSTS_KEY} = {{'srv1178562': {{}}}}"


def declared_hosts(group: str, group_data: Path = GROUP_DATA) -> dict[str, dict[str, Any]]:
    """The hosts a group declares in ``group_data/<group>.py`` (``hosts = {name: values}``), in
    order: each name is the host's inventory name and its ``/etc/hostname``; its values are merged
    over the group's. A second VPS of the same stack is one more entry (and its address in
    inventory.py), not a code change."""
    check_group_files(group_data)
    path = group_data / f"{group}.py"
    return checked_hosts(group, read_group_file(path).get(HOSTS_KEY) if path.exists() else None)


def checked_hosts(group: str, values: Any) -> dict[str, dict[str, Any]]:
    """``hosts`` as group_data/<group>.py sets it, checked: a non-empty map of host names (DNS
    labels) to dicts of options."""
    if not isinstance(values, Mapping) or not values:
        raise ConfigError(f"group_data/{group}.py: '{HOSTS_KEY}' must name the group's hosts, each with the values "
                          f"that differ on it ({HOSTS_EXAMPLE})")
    for name, entry in values.items():
        if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name):
            raise ConfigError(f"group_data/{group}.py: {HOSTS_KEY}[{name!r}]: a host's name is one DNS label "
                              f"(letters, digits, '-'), its /etc/hostname ({HOSTS_EXAMPLE})")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"group_data/{group}.py: {HOSTS_KEY}[{name!r}] must be a dict of the options that "
                              f"differ on this host, or {{}} ({HOSTS_EXAMPLE})")
        if HOSTS_KEY in entry:
            raise ConfigError(f"group_data/{group}.py: {HOSTS_KEY}[{name!r}] holds '{HOSTS_KEY}' itself; "
                              "remove it (hosts are declared once, at the top level of the group file)")
    return {name: dict(entry) for name, entry in values.items()}


def checked_confirm(group: str, values: Any) -> dict[str, str]:
    """``confirm`` as group_data/<group>.py sets it, checked: option paths of the model, each with
    how to confirm it on the server."""
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                  for k, v in values.items()):
        raise ConfigError(f"group_data/{group}.py: '{CONFIRM_KEY}' maps an option's path to how to confirm its value "
                          f"on the server ({CONFIRM_EXAMPLE})")
    for option in values:
        if _walk(tuple(option.split(".")))[0] is None:
            raise ConfigError(f"group_data/{group}.py: {CONFIRM_KEY}[{option!r}] names no option of the model "
                              "(docs/options.md lists them); fix the path or remove the entry")
    return dict(values)


def confirm_items(group: str, group_data: Path = GROUP_DATA) -> dict[str, str]:
    """What group_data/<group>.py asks an operator to confirm on the server (option path -> how)."""
    items: dict[str, str] = {}
    for name in ("all", group):
        path = group_data / f"{name}.py"
        if path.exists():
            items.update(checked_confirm(name, read_group_file(path).get(CONFIRM_KEY)))
    return items


def load_layers(group: str, overrides: Mapping[str, Any] | None,
                group_data: Path = GROUP_DATA, hostname: str | None = None) -> list[Layer]:
    """The layers of one host's values, lowest first: all.py, the group's file, the host's name,
    the host's entry under ``hosts``, then a non-production stack's overrides (group-wide, then
    under their own ``hosts`` for this host)."""
    check_group_files(group_data)
    layers = []
    group_hosts = None
    for name in ("all", group):
        path = group_data / f"{name}.py"
        if path.exists():
            values = read_group_file(path)
            hosts = values.pop(HOSTS_KEY, None)
            checked_confirm(name, values.pop(CONFIRM_KEY, None))
            if name == group:
                group_hosts = hosts
            if hosts is not None and name == "all":
                raise ConfigError(f"group_data/all.py: '{HOSTS_KEY}' belongs in a group's file "
                                  f"(group_data/{', group_data/'.join(f'{g}.py' for g in GROUPS)})")
            if "hostname" in (values.get("host") or {}):
                raise ConfigError(f"group_data/{name}.py: 'host.hostname' is the host's key under '{HOSTS_KEY}' "
                                  f"(each host of a group has its own name); remove it here, or set it in the "
                                  f"host's entry if it differs from the inventory name ({HOSTS_EXAMPLE})")
            layers.append(Layer(f"group_data/{name}.py", values))
    if hostname is not None:
        declared = checked_hosts(group, group_hosts)
        extra = dict(((overrides or {}).get(HOSTS_KEY) or {}).get(hostname) or {})
        if hostname not in declared and not extra:
            raise ConfigError(f"host {hostname}: group_data/{group}.py declares no such host (its hosts: "
                              f"{', '.join(declared)}); add it under '{HOSTS_KEY}' or use one of those names")
        layers.append(Layer(f"group_data/{group}.py {HOSTS_KEY}[{hostname!r}]", {"host": {"hostname": hostname}}))
        if host_values := declared.get(hostname, {}):
            layers.append(Layer(f"group_data/{group}.py {HOSTS_KEY}[{hostname!r}]", host_values))
    if overrides:
        rest = {k: v for k, v in overrides.items() if k != HOSTS_KEY}
        if rest:
            layers.append(Layer("inventory overrides", rest))
        own = (overrides.get(HOSTS_KEY) or {}).get(hostname) if hostname is not None else None
        if own:
            layers.append(Layer(f"inventory overrides {HOSTS_KEY}[{hostname!r}]", dict(own)))
    return layers


def _secret_needs(group: str, hostname: str, overrides: Mapping[str, Any] | None,
                  group_data: Path) -> tuple[list[Layer], dict[str, Any], list[tuple], list[tuple]]:
    layers = load_layers(group, overrides, group_data, hostname)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.values)
    return layers, merged, secret_paths(data=merged), secret_paths(data=merged, required_only=True)


def secret_needs(group: str, group_data: Path = GROUP_DATA) -> tuple[list[tuple], list[tuple]]:
    """(every secret path, the required ones) the declared configuration of ``group`` uses, for
    its first declared host (what the secrets file must hold for it: `make secrets-template`)."""
    _, _, wanted, required = _secret_needs(group, next(iter(declared_hosts(group, group_data))), None, group_data)
    return wanted, required


def build_host_config(
    group: str,
    hostname: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Any = None,
    group_data: Path = GROUP_DATA,
) -> HostConfig:
    """Validate one host's configuration; raise ConfigError with an operator-facing message.

    ``secrets`` is a source with ``provide(group, paths, required) -> nested dict`` (see
    stack.secrets); without one, required secrets get a placeholder (offline validation).
    """
    layers, merged, wanted, required = _secret_needs(group, hostname, overrides, group_data)
    for layer in layers:
        for path in wanted:
            if _lookup(layer.values, path[:-1] if path[-1] == "*" else path):
                shown = ".".join(path[:-1] if path[-1] == "*" else path)
                raise ConfigError(
                    f"{layer.source}: option '{shown}' is a secret and must not be kept "
                    "in the repository or inventory; remove it there and provide it through the "
                    "secrets file (see docs/secrets.md)"
                )
    if secrets is not None:
        values = secrets.provide(group, wanted, required)
    else:
        values = {}
        for path in required:
            node = values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = placeholder(path)
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


# ---- the declared revision, written by `make release` (cli/release.py)

def read_stack_values(path: Path) -> dict[str, Any]:
    """A non-production stack's own values (``{group: {option: ...}}``), kept beside the stack
    (the sandbox: ``.sandbox/<name>/stack.json``), never in group_data: a sandbox release must
    not change what production declares."""
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); fix or remove it (it holds `make release` pins)") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected an object {{group: values}}; fix or remove it")
    return values


def pin_stack_revision(path: Path, group: str, app: str, commit: str) -> str | None:
    """Set ``apps.<app>.source.revision`` of ``group`` in a stack values file; return the
    revision it held before (None: the stack took group_data's)."""
    values = read_stack_values(path)
    source = values.setdefault(group, {}).setdefault("apps", {}).setdefault(app, {}).setdefault("source", {})
    before = source.get("revision")
    source["revision"] = commit
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return before


def unpin_stack_revision(path: Path, group: str, app: str, before: str | None) -> None:
    """Put back what ``pin_stack_revision`` replaced."""
    values = read_stack_values(path)
    source = values.get(group, {}).get("apps", {}).get(app, {}).get("source", {})
    if before is None:
        source.pop("revision", None)
    else:
        source["revision"] = before
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def _revision_node(tree: ast.Module, app: str) -> ast.Constant | None:
    def key(d: ast.Dict, name: str) -> ast.expr | None:
        return next((v for k, v in zip(d.keys, d.values, strict=True)
                     if isinstance(k, ast.Constant) and k.value == name), None)

    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "apps" for t in stmt.targets)
                and isinstance(stmt.value, ast.Dict)):
            node = key(stmt.value, app)
            node = key(node, "source") if isinstance(node, ast.Dict) else None
            node = key(node, "revision") if isinstance(node, ast.Dict) else None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.lineno == node.end_lineno:
                return node
    return None


def pin_group_file_revision(path: Path, app: str, commit: str, note: str) -> tuple[str, str]:
    """Set ``apps[app]['source']['revision']`` in a group_data file to ``commit``, keeping the
    file's layout; the line's comment becomes ``note``. Return (line before, line after).

    The file is Python: the value is found with ``ast`` (a string literal inside the ``apps``
    dict literal), not with a pattern, so another app's revision or a comment is never touched."""
    text = path.read_text()
    node = _revision_node(ast.parse(text), app)
    if node is None:
        raise ConfigError(f"group_data/{path.name}: apps[{app!r}]['source']['revision'] is not a string literal in "
                          f"the `apps = {{...}}` dict; set it by hand to {commit!r}")
    lines = text.splitlines(keepends=True)
    old = lines[node.lineno - 1]
    body = old[:node.col_offset] + repr(commit) + old[node.end_col_offset:].split("#")[0].rstrip()
    new = f"{body}  # {note}\n"
    lines[node.lineno - 1] = new
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    ast.parse(tmp.read_text())
    tmp.replace(path)
    return old.rstrip("\n"), new.rstrip("\n")


# `make release APP=x` applies that app's steps only (deploy.py); the plan it previews is the same
RELEASE_ONLY_ENV = "IAC_RELEASE_ONLY"


# what the host's history says an app-only run was for (a rotation sets it; default: the release)
RUN_PURPOSE_ENV = "IAC_RUN_PURPOSE"


def run_purpose(default: str) -> str:
    """What the host's history records an app-only run as (``IAC_RUN_PURPOSE``, else ``default``)."""
    return os.environ.get(RUN_PURPOSE_ENV) or default


def release_only(config: HostConfig) -> str | None:
    """The app ``make release`` applies alone on this host, or None for a full converge."""
    app = os.environ.get(RELEASE_ONLY_ENV)
    if not app:
        return None
    if app not in config.apps:
        raise ConfigError(f"{RELEASE_ONLY_ENV}={app!r}: {config.host.hostname} has no such app "
                          f"(its apps: {', '.join(config.apps) or 'none'}); run with --limit on the app's host")
    return app
