"""Environment files as systemd's EnvironmentFile= reads them: quoting, parsing, running a command
with one (the engines' one implementation; the controller writes env files with the same quoting).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# inside double quotes, the characters a backslash escapes for systemd's EnvironmentFile= parser
# (SHELL_NEED_ESCAPE) and for a POSIX shell alike: escaped, each reads back as itself in both
ESCAPED = '\\"$`'
# what a value may not hold: it ends a line for systemd, for Python's splitlines (the engines, the
# digests) or for a terminal, so two readers would disagree on where the value stops
_BREAKS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def quote_env_value(value: str) -> str:
    """A value for a systemd EnvironmentFile= line: double-quoted, with \\ " $ and ` escaped.

    systemd, ``sh -c '. FILE'`` and ``parse_env_file`` all read back exactly ``value``, and none
    of them expands anything in it. A value holding a newline, NUL, another control character or a
    Unicode line or paragraph separator is refused: readers split lines differently on them."""
    if found := _BREAKS.search(value):
        raise ValueError(f"environment values cannot contain a newline, NUL or other control or line-separator "
                         f"character (U+{ord(found.group()):04X})")
    return '"' + "".join("\\" + c if c in ESCAPED else c for c in value) + '"'


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (the subset this repo writes:
    comments, bare values, double- or single-quoted values). Lines end at a newline only, as for
    systemd; inside double quotes a backslash escapes only \\ " $ and ` (any other stays, as
    systemd and a shell keep it)."""
    out: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not a KEY=value line: {key[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, body, chars, i = value[0], value[1:-1], [], 0
            while i < len(body):
                if body[i] == "\\" and i + 1 < len(body) and quote == '"' and body[i + 1] in ESCAPED:
                    chars.append(body[i + 1])
                    i += 2
                    continue
                chars.append(body[i])
                i += 1
            value = "".join(chars)
        out[key] = value
    return out


def env_with(path: str | None) -> dict[str, str]:
    """This process's environment plus an env file's variables (as systemd's EnvironmentFile= would)."""
    return {**os.environ, **(parse_env_file(Path(path).read_text()) if path else {})}


def env_exec(path: str, argv: list[str]) -> int:
    os.execvpe(argv[0], argv, env_with(path))
    return 127  # not reached
