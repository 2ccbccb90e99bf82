"""Rendering files for hosts: templates from templates/ (each gets only the values it writes),
with the escaping proper to each file format (iac/formats.py: ``| env``, ``| sh``, ``| nginx``,
``| unit``), and text handed to pyinfra's file operations."""

from __future__ import annotations

from io import StringIO

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from iac.formats import FILTERS
from iac.repo import TEMPLATES

_jinja = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                     keep_trailing_newline=True, autoescape=False)
_jinja.filters.update(FILTERS)


def render(template: str, **context: object) -> str:
    """Render ``template`` (a path under templates/, mirroring its target path) with ``context``."""
    return _jinja.get_template(template).render(**context)


def text_file(text: str) -> StringIO:
    """``text`` as the file-like source pyinfra's ``files.put`` uploads."""
    return StringIO(text)
