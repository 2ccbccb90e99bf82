"""Where this repository's own files are, derived here once: the checkout, the templates and
files shipped to hosts, the stack's values."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
FILES = REPO / "files"
GROUP_DATA = REPO / "group_data"
