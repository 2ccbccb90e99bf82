"""`make secrets-template` (cli/secrets_template.py): every secret the configuration needs, all
groups at once, in the shape the secrets file takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli import secrets_template
from iac.errors import ConfigError
from stack.load import GROUPS, secret_needs
from stack.secrets import SecretsFile


def _fill(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _fill(v) if isinstance(v, dict) else "filled" for k, v in node.items()}


def test_the_skeleton_holds_every_required_secret_of_every_group_and_nothing_unknown(tmp_path: Path) -> None:
    tree, listed = secrets_template.skeleton()
    assert list(tree) == list(GROUPS)
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({g: _fill(v) for g, v in tree.items()}))
    path.chmod(0o600)
    for group in GROUPS:
        wanted, required = secret_needs(group)
        assert required and set(required) <= set(wanted)
        SecretsFile(path, require=True).provide(group, wanted, required)  # nothing missing, nothing unknown
    assert ("lan.connection.sudo_password", "optional: else typed at a terminal (CI needs it)") in listed
    assert ("public.apps.chip_dashboard.secret_key", "required") in listed
    assert not any(p.startswith("public.connection") for p, _ in listed)  # root login: no sudo password


def test_left_empty_a_required_secret_is_named_when_a_run_needs_it(tmp_path: Path) -> None:
    tree, _ = secrets_template.skeleton()
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(tree))
    path.chmod(0o600)
    wanted, required = secret_needs("public")
    with pytest.raises(ConfigError, match="apps.chip_dashboard.secret_key"):
        SecretsFile(path, require=True).provide("public", wanted, required)
