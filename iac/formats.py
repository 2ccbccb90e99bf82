"""How a value is written into each kind of file the repo generates.

The model already refuses values that have no business in a file (newlines, metacharacters in
names and paths). These writers are the second line: whatever a value holds, it cannot change
the meaning of the file it lands in. Templates use them as jinja filters (``operations/render``):

    {{ value | env }}      systemd EnvironmentFile= value (double-quoted, escaped)
    {{ value | sh }}       one shell word (shlex.quote)
    {{ value | nginx }}    one nginx token (refused if it would need quoting)
    {{ value | unit }}     one word of a unit's ExecStart= (refused if it would need quoting)
"""

from __future__ import annotations

import re
import shlex

from iac.engines import envfile


def env_value(value: object) -> str:
    """A value for a ``KEY=value`` line of a systemd EnvironmentFile=: systemd reads back exactly
    ``value`` ($, `, #, ;, quotes, % and backslashes included); a newline or NUL is refused. The
    engines' own quoting (engine_common/envfile.py): one implementation, and they parse it back."""
    return envfile.quote_env_value(str(value))


def env_lines(values: dict[str, str]) -> str:
    """``KEY="value"`` lines, one per entry."""
    for key in values:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{key!r} is not an environment variable name")
    return "".join(f"{k}={env_value(v)}\n" for k, v in values.items())


def shell_word(value: object) -> str:
    """One word for a shell (a settings file a script sources, a command line)."""
    return shlex.quote(str(value))


_BARE_TOKEN = re.compile(r"[A-Za-z0-9_.:/@*+=,\[\]-]+")


def nginx_token(value: object) -> str:
    """One nginx token. Values reaching nginx (names, paths, ports) never need quoting; one that
    would (space, ;, {, }, quote, $, #, backslash) is refused rather than quoted."""
    text = str(value)
    if not _BARE_TOKEN.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written as an nginx token")
    return text


def unit_word(value: object) -> str:
    """One word of a systemd unit line (ExecStart= arguments, paths): refused if systemd would
    split, unquote or expand it (space, quotes, backslash, %, $, ;)."""
    text = str(value)
    if not _BARE_TOKEN.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written as one word of a systemd unit")
    return text


FILTERS = {"env": env_value, "sh": shell_word, "nginx": nginx_token, "unit": unit_word}
