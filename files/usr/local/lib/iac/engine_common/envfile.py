"""Environment files as systemd's EnvironmentFile= reads them: quoting, parsing, running a command
with one (the engines' one implementation; the controller writes env files with the same quoting).
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def quote_env_value(value: str) -> str:
    """A value for a systemd EnvironmentFile= line: double-quoted, \\ and " and $ escaped.

    systemd unquotes and unescapes it and never expands anything; ``parse_env_file`` reads it back
    the same way."""
    if "\n" in value or "\0" in value:
        raise ValueError("environment values cannot contain a newline or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (the subset this repo writes:
    comments, bare values, double- or single-quoted values with backslash escapes)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
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
                if body[i] == "\\" and i + 1 < len(body) and quote == '"':
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
