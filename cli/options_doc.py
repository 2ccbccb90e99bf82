"""Write the options reference, docs/options.md, from the configuration model (HostConfig).

One section per option path of the whole tree (``apps.<name>.nginx.server_names``: ``<name>``
stands for a key of a map), grouped by concern: its type in words, its default (or "required"),
description, examples and the file that declares it. Secrets are marked and no value of theirs
is shown. The output depends on the model only (sorted, no timestamps), so a test can compare it
with the file in the repository (tests/unit/test_options_doc.py).

Descriptions and examples live in each concern's ``options.py``; the names of value types in
``iac/values.py`` (``type_name``). A type this module cannot name stops it, naming the option.

Usage: python -m cli.options_doc [--check]   (make options-doc)
Exit codes: 0 written (or, with --check, up to date); 1 stale (--check) or a type without a name.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import AfterValidator, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from iac.repo import REPO
from operations.host import HostConfig

OUT = REPO / "docs" / "options.md"

COMMAND = "make options-doc"

# the order of the concerns in the document; a concern not listed here follows, by name
CONCERNS = ("host", "base", "admin", "exposure", "network", "tailscale", "postgres", "node", "apps", "nginx",
            "tls", "backups", "watch", "baseline")

# a concern's folder under operations/ -> its name here (the app's options are the `apps` map's)
FOLDER_CONCERN = {"app": "apps"}

# sections documented under another concern than their folder's: the host's identity (declared
# beside the base system) is the `host` concern, with HostConfig's own options
SECTION_CONCERN = {"HostSection": "host"}

SECRET_TYPE = "secret (from the secrets file)"


class UnnamedType(TypeError):
    """An option whose type has no name for people (a validator without ``type_name``)."""


@dataclass(frozen=True)
class Kind:
    """A type in words: for one value, and for several (inside a list)."""

    one: str
    many: str


@dataclass(frozen=True)
class Option:
    path: str
    concern: str
    type: str
    default: str | None  # a value as group_data writes it; None: required
    description: str
    examples: tuple[str, ...]
    declared_in: tuple[tuple[str, str], ...]  # (file, class): (("operations/app/options.py", "DjangoApp"),)
    secret: bool
    section_doc: str = ""  # the docstring of the section(s) the option holds
    applies_when: str = ""


def _plural(noun: str) -> str:
    """'DNS name' -> 'DNS names', 'IPv4 address with prefix length' -> 'IPv4 addresses with ...'."""
    head, sep, rest = noun, "", ""
    for marker in (" (", " with ", " under ", " inside ", ", "):
        at = noun.find(marker)
        if at > 0 and (not sep or at < len(head)):
            head, sep, rest = noun[:at], marker, noun[at + len(marker):]
    if head.endswith(("s", "x", "sh", "ch")):
        head += "es"
    elif head.endswith("y") and head[-2:-1] not in ("a", "e", "i", "o", "u"):
        head = head[:-1] + "ies"
    else:
        head += "s"
    return f"{head}{sep}{rest}"


def _unwrap(ann: Any, meta: Sequence[Any] = ()) -> tuple[Any, list[Any]]:
    """The bare type and every constraint on it (Annotated's and Field()'s, flattened; a Field()
    naming a discriminator is kept for it)."""
    out = list(meta)
    while get_origin(ann) is Annotated:
        ann, *extra = get_args(ann)
        out.extend(extra)
    flat: list[Any] = []
    for m in out:
        if isinstance(m, FieldInfo):
            flat.extend(m.metadata)
            if isinstance(m.discriminator, str):
                flat.append(m)
        else:
            flat.append(m)
    return ann, flat


def _models(ann: Any) -> list[type[BaseModel]]:
    """The sections a type is or holds directly (a section, an optional one, a union of them)."""
    ann, _ = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    if get_origin(ann) in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _models(a)]
    return []


def _literal_values(ann: Any) -> list[str]:
    ann, _ = _unwrap(ann)
    return sorted(str(v) for v in get_args(ann)) if get_origin(ann) is Literal else []


def _bounds(meta: Sequence[Any]) -> tuple[Any, Any]:
    lo = hi = None
    for m in meta:
        if isinstance(m, Ge):
            lo = m.ge
        elif isinstance(m, Gt):
            lo = m.gt + 1
        elif isinstance(m, Le):
            hi = m.le
        elif isinstance(m, Lt):
            hi = m.lt - 1
    return lo, hi


def _lengths(meta: Sequence[Any]) -> tuple[int | None, int | None]:
    lo = next((m.min_length for m in meta if isinstance(m, MinLen)), None)
    hi = next((m.max_length for m in meta if isinstance(m, MaxLen)), None)
    return lo, hi


def _named(meta: Sequence[Any]) -> Kind | None:
    """The name ``type_name`` gave a validator of this type; UnnamedType for one without."""
    found = None
    for m in meta:
        if isinstance(m, AfterValidator):
            name = getattr(m.func, "type_name", None)
            if name is None:
                raise UnnamedType(f"its validator {getattr(m.func, '__qualname__', m.func)!r} has no name for "
                                  "people: decorate it with iac.values.type_name('...')")
            found = Kind(name, getattr(m.func, "type_name_plural", None) or _plural(name))
    return found


def _discriminator(info_or_meta: Any) -> str | None:
    if isinstance(info_or_meta, FieldInfo) and isinstance(info_or_meta.discriminator, str):
        return info_or_meta.discriminator
    if isinstance(info_or_meta, (list, tuple)):
        for m in info_or_meta:
            if isinstance(m, FieldInfo) and isinstance(m.discriminator, str):
                return m.discriminator
    return None


def kind(ann: Any, meta: Sequence[Any] = (), discriminator: str | None = None) -> Kind:
    """An option's type in words ("list of DNS names", "integer 1..336", "one of: debian, nodesource")."""
    ann, meta = _unwrap(ann, meta)
    discriminator = discriminator or _discriminator(meta)
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) < len(args):
            inner = kind(present[0] if len(present) == 1 else Union[tuple(present)], meta, discriminator)  # noqa: UP007
            return Kind(f"{inner.one}, or None", f"{inner.many}, or None")
        models = _models(ann)
        if models and len(models) == len(present):
            if discriminator:
                tags = sorted(v for m in models for v in _literal_values(m.model_fields[discriminator].annotation))
                text = f"whose `{discriminator}` is one of: {', '.join(tags)}"
                return Kind(f"section {text}", f"sections, each {text}")
            return Kind("section, one of: " + ", ".join(sorted(m.__name__ for m in models)),
                        "sections, each one of: " + ", ".join(sorted(m.__name__ for m in models)))
        parts = [kind(a) for a in present]
        return Kind(" or ".join(p.one for p in parts), " or ".join(p.many for p in parts))
    named = _named(meta)
    if named and ann is not str:  # a named list (a manage.py command) is one value to people
        return named
    if origin is Literal:
        values = ", ".join(sorted(str(v) for v in args))
        return Kind(f"one of: {values}", f"values, each one of: {values}")
    if origin is list:
        inner = kind(args[0])
        lo, hi = _lengths(meta)
        if lo == 1 and hi is None:
            text = f"non-empty list of {inner.many}"
        elif lo or hi:
            text = f"list of {lo or 0}..{hi if hi is not None else 'any'} {inner.many}"
        else:
            text = f"list of {inner.many}"
        return Kind(text, f"lists of {inner.many}")
    if origin is dict:
        key, value = kind(args[0]), kind(args[1])
        return Kind(f"map from {key.one} to {value.one}", f"maps from {key.one} to {value.one}")
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return Kind("section", "sections")
    if ann is SecretStr:
        return Kind(SECRET_TYPE, "secrets (from the secrets file)")
    if ann is bool:
        return Kind("boolean", "booleans")
    if ann is int:
        lo, hi = _bounds(meta)
        if lo is not None and hi is not None:
            return Kind(f"integer {lo}..{hi}", f"integers {lo}..{hi}")
        if lo is not None:
            return Kind(f"integer, at least {lo}", f"integers, each at least {lo}")
        if hi is not None:
            return Kind(f"integer, at most {hi}", f"integers, each at most {hi}")
        return Kind("integer", "integers")
    if ann is str:
        pattern = next((m.pattern for m in meta if isinstance(getattr(m, "pattern", None), str)), None)
        _, longest = _lengths(meta)
        if named:
            base = named
        elif pattern:
            base = Kind(f"string matching `{pattern}`", f"strings matching `{pattern}`")
        else:
            base = Kind("string", "strings")
        if longest is not None:
            base = Kind(f"{base.one} (at most {longest} characters)", f"{base.many} (at most {longest} characters)")
        return base
    raise UnnamedType(f"the type {ann!r} has no name here: add it to cli/options_doc.py kind()")


def py(value: Any, indent: int = 0, width: int = 88) -> str:
    """A value as it is written in group_data/ (Python; strings double-quoted), wrapped when long."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, BaseModel):
        return py(value.model_dump(mode="json"), indent, width)
    if isinstance(value, (list, tuple)):
        items = [py(v, indent + 4, width) for v in value]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) + indent <= width and "\n" not in one_line:
            return one_line
        pad = " " * (indent + 4)
        return "[\n" + "".join(f"{pad}{i},\n" for i in items) + " " * indent + "]"
    if isinstance(value, dict):
        items = [f"{py(k)}: {py(v, indent + 4, width)}" for k, v in value.items()]
        one_line = "{" + ", ".join(items) + "}"
        if len(one_line) + indent <= width and "\n" not in one_line:
            return one_line
        pad = " " * (indent + 4)
        return "{\n" + "".join(f"{pad}{i},\n" for i in items) + " " * indent + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a group_data value")


def _is_secret(ann: Any) -> bool:
    ann, _ = _unwrap(ann)
    return ann is SecretStr or any(_is_secret(a) for a in get_args(ann))


def _declared_by(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class whose body declares field ``name`` (a subclass may redeclare an inherited one)."""
    for cls in model.__mro__:
        if name in getattr(cls, "__annotations__", {}) and issubclass(cls, BaseModel):
            return cls
    return model


def _source(cls: type) -> str:
    path = Path(inspect.getsourcefile(cls) or "")
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def concern_of(cls: type) -> str:
    """The concern a section belongs to: its folder under operations/ (SECTION_CONCERN first)."""
    if cls.__name__ in SECTION_CONCERN:
        return SECTION_CONCERN[cls.__name__]
    parts = Path(_source(cls)).parts
    if len(parts) >= 3 and parts[0] == "operations":
        return FOLDER_CONCERN.get(parts[1], parts[1])
    if parts and parts[-1] == "host.py":
        return "host"
    return parts[-1].removesuffix(".py") if parts else "other"


def _doc(cls: type) -> str:
    """A section's own docstring, as one paragraph (none: '')."""
    text = cls.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(text).split()) if text else ""


# defaults shown in words, not as a value
SECTION_DEFAULT = "(each option's own default)"
SECRET_DEFAULT = "(not shown: a secret)"


def _default(info: FieldInfo, secret: bool) -> str | None:
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    if secret:  # nothing or an empty map may be shown; a value, never
        return py(value) if value is None or value == {} else SECRET_DEFAULT
    if isinstance(value, BaseModel):
        return SECTION_DEFAULT
    return py(value)


def _option(model: type[BaseModel], name: str, info: FieldInfo, path: str, when: str) -> Option:
    cls = _declared_by(model, name)
    secret = _is_secret(info.annotation)
    held = _models(info.annotation)
    if get_origin(_unwrap(info.annotation)[0]) is dict:
        held = _models(get_args(_unwrap(info.annotation)[0])[1])
    try:
        typ = kind(info.annotation, info.metadata, _discriminator(info))
    except UnnamedType as exc:
        raise UnnamedType(f"option {path} ({_source(cls)}, {cls.__name__}): {exc}") from None
    docs = [_doc(m) for m in held]
    return Option(
        path=path,
        concern=concern_of(held[0]) if held else concern_of(cls),
        type=typ.one,
        default=_default(info, secret),
        description=info.description or "",
        examples=tuple(py(e) for e in (info.examples or [])),
        declared_in=((_source(cls), cls.__name__),),
        secret=secret,
        section_doc=" ".join(d for d in dict.fromkeys(docs) if d),
        applies_when=when,
    )


def _children(info: FieldInfo, path: str) -> Iterator[tuple[str, type[BaseModel], str]]:
    """(prefix, section, condition) of the options under an option: its section, the sections
    of its variants (by the discriminator's value), or a map's entries (``<name>``)."""
    ann, meta = _unwrap(info.annotation, info.metadata)
    if get_origin(ann) is dict:
        path = f"{path}.<name>"
        ann, meta = _unwrap(get_args(ann)[1])
    models = _models(ann)
    discriminator = _discriminator(info) or _discriminator(meta)
    for model in models:
        when = ""
        if len(models) > 1:
            tag = _literal_values(model.model_fields[discriminator].annotation) if discriminator else []
            when = (f"`{path}.{discriminator}` is " + " or ".join(f"`{py(t)}`" for t in tag) if tag
                    else f"`{path}` is a {model.__name__}")
        yield f"{path}.", model, when


def _walk(model: type[BaseModel], prefix: str = "", when: str = "") -> Iterator[Option]:
    for name, info in model.model_fields.items():
        path = prefix + name
        yield _option(model, name, info, path, when)
        for sub_prefix, sub, sub_when in _children(info, path):
            yield from _walk(sub, sub_prefix, " and ".join(w for w in (when, sub_when) if w))


def _merge(path: str, found: list[Option]) -> Option:
    """One entry for an option every variant of a section declares: only their discriminator
    (``engine``), whose type is then the union of their values."""
    values = []
    for o in found:
        if not o.type.startswith("one of: "):
            where = ", ".join(f"{f} ({c})" for each in found for f, c in each.declared_in)
            raise ValueError(f"option {path} is declared by several variants ({where}) and is not their "
                             "discriminator: give it one meaning, or distinct names")
        values += o.type.removeprefix("one of: ").split(", ")
    first = found[0]
    return replace(
        first,
        type="one of: " + ", ".join(sorted(set(values))),
        description=" ".join(f"`{py(o.type.removeprefix('one of: '))}`: {o.description}" for o in found),
        examples=tuple(dict.fromkeys(e for o in found for e in o.examples)),
        declared_in=tuple(dict.fromkeys(d for o in found for d in o.declared_in)),
        applies_when="",
    )


def options(model: type[BaseModel] = HostConfig) -> list[Option]:
    """Every option of the model tree, once each, ordered by concern then path."""
    by_path: dict[str, list[Option]] = {}
    for option in _walk(model):
        by_path.setdefault(option.path, []).append(option)
    merged = [found[0] if len(found) == 1 else _merge(path, found) for path, found in by_path.items()]
    order = {c: i for i, c in enumerate(CONCERNS)}
    return sorted(merged, key=lambda o: (order.get(o.concern, len(order)), o.concern, o.path))


# a word holding a placeholder (apps.<name>.secret_env, /var/lib/<dir>/<file>), without the
# punctuation that ends a sentence or clause
PLACEHOLDER_WORD = re.compile(r"[^\s`()<>]*(?:<[a-z_]+>[^\s`()<>]*)+(?<![.,;:])")


def _markdown_escape(text: str) -> str:
    """Plain text as Markdown: what it would take for markup (an HTML tag, emphasis, a quote) escaped."""
    text = text.replace("\\", "\\\\").replace("<", "&lt;").replace("*", "\\*")
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)
    return "\\" + text if text.startswith(">") else text


def _prose(text: str) -> str:
    """Description text as Markdown: `code` kept as it is, words holding a placeholder (<name>)
    made code, and the rest escaped (never read as HTML or emphasis)."""
    if text.count("`") % 2:  # an unpaired backtick: keep it literal
        text = text.replace("`", "'")
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(f"`{part}`")
            continue
        at = 0
        for m in PLACEHOLDER_WORD.finditer(part):
            out += [_markdown_escape(part[at:m.start()]), f"`{m.group()}`"]
            at = m.end()
        out.append(_markdown_escape(part[at:]))
    return "".join(out)


def _inline(value: str) -> bool:
    return "\n" not in value and "`" not in value and len(value) <= 72


def _block(value: str) -> list[str]:
    """A value as an indented Python block inside a list item."""
    return ["", "  ```python", *(f"  {line}" for line in value.splitlines()), "  ```"]


def _value_item(label: str, values: Sequence[str]) -> list[str]:
    """``- Label: `v1`, `v2` `` or, for a long value, the label and one block per value."""
    if all(_inline(v) for v in values):
        return [f"- {label}: " + ", ".join(f"`{v}`" for v in values)]
    lines = [f"- {label}:"]
    for v in values:
        lines += _block(v)
    return lines


def _concern_file(concern: str) -> Path | None:
    """The file whose docstring introduces a concern: its options.py (operations/host.py for the host)."""
    folders = [k for k, v in FOLDER_CONCERN.items() if v == concern] or [concern]
    candidates = [REPO / "operations" / f / "options.py" for f in folders] + [REPO / "operations" / f"{concern}.py"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _summary(concern: str) -> str:
    """The first paragraph of the docstring of the concern's file, as one line."""
    path = _concern_file(concern)
    doc = ast.get_docstring(ast.parse(path.read_text())) if path else None
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def _entry(o: Option) -> list[str]:
    lines = [f"### `{o.path}`", ""]
    if o.description:
        lines += [_prose(o.description), ""]
    if o.section_doc:
        lines += [_prose(o.section_doc), ""]
    lines.append(f"- Type: {_prose(o.type)}")
    if o.secret:
        lines.append("- **Secret**: set in the secrets file only, never in group_data; no value of it is shown here")
    if o.default is None:
        lines.append("- Default: required")
    elif o.default in (SECTION_DEFAULT, SECRET_DEFAULT):
        lines.append(f"- Default: {o.default}")
    else:
        lines += _value_item("Default", [o.default])
    if o.applies_when:
        lines.append(f"- Applies when: {o.applies_when}")
    if o.examples == (o.default,):
        lines.append("- Example: the default")
    elif o.examples:
        label = "Example" if len(o.examples) == 1 else "Examples"
        lines += _value_item(f"{label} (the shape only)" if o.secret else label, o.examples)
    files = dict.fromkeys(f for f, _ in o.declared_in)
    lines.append("- Declared in: " + ", ".join(
        f"`{f}` ({', '.join(c for g, c in o.declared_in if g == f)})" for f in files))
    return lines + [""]


def render(opts: list[Option] | None = None) -> str:
    """docs/options.md: the header, a table of contents, then each concern's options."""
    opts = options() if opts is None else opts
    concerns = list(dict.fromkeys(o.concern for o in opts))
    lines = [
        "# Options reference",
        "",
        "<!-- Generated by `python -m cli.options_doc` (`make options-doc`); edits here are overwritten. -->",
        "",
        f"Generated from the configuration model (`operations/host.py`, HostConfig) by `{COMMAND}`",
        "(`python -m cli.options_doc`); do not edit it by hand. To change a description or an example, edit",
        "the `options.py` named under the option (a type's name: `type_name` in `iac/values.py`), then run",
        f"`{COMMAND}`; `tests/unit/test_options_doc.py` fails while this file is stale.",
        "",
        "Values are set in `group_data/` (`all.py`, then `<group>.py`, then the host's entry under `hosts`),",
        "written as Python; secrets only in the secrets file (docs/secrets.md), and no secret's value",
        "appears here. In a path, `<name>` stands for a key of a map (an app's name, a process's name, ...).",
        "",
        "## Contents",
        "",
    ]
    for concern in concerns:
        count = sum(1 for o in opts if o.concern == concern)
        lines.append(f"- [{concern}](#{concern}) ({count} options)")
    lines.append("")
    for concern in concerns:
        lines += [f"## {concern}", ""]
        summary = _summary(concern)
        if summary:
            lines += [_prose(summary), ""]
        for o in opts:
            if o.concern == concern:
                lines += _entry(o)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.options_doc", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 when docs/options.md is stale")
    args = parser.parse_args(argv)
    out = OUT
    shown = out.relative_to(REPO).as_posix() if out.is_relative_to(REPO) else str(out)
    try:
        text = render()
    except (UnnamedType, ValueError) as exc:
        print(f"options-doc: {exc}", file=sys.stderr)
        return 1
    current = out.read_text() if out.exists() else None
    if args.check:
        if current != text:
            print(f"{shown} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{shown} is up to date")
        return 0
    if current != text:
        out.write_text(text)
    print(f"{'wrote' if current != text else 'unchanged:'} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
