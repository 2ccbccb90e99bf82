"""Fixtures shared by the unit tests: the production configuration of both groups, a scratch copy
of group_data/ to break, and a secrets file of a test's own. Nothing here connects to a host.

The production configurations are session-scoped: a HostConfig is frozen, and at the end of the
session each is compared with a fresh load, so a test that changed one in place (a nested list
or dict) fails the session instead of silently changing what later tests see.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from cli.validate import load_inventory
from iac.repo import GROUP_DATA, REPO
from operations.host import HostConfig
from stack.secrets import SecretsFile


def _production_configs() -> dict[str, HostConfig]:
    """Each group's one host, validated by the real inventory.py loaded offline (no secrets: the
    required ones get placeholders; nothing connects)."""
    return {group: hosts[0][1]["config"] for group, hosts in load_inventory(REPO / "inventory.py").items()}


@pytest.fixture(scope="session")
def production() -> Iterator[Mapping[str, HostConfig]]:
    """{"public": HostConfig, "lan": HostConfig} as inventory.py gives them."""
    configs = _production_configs()
    yield MappingProxyType(configs)
    fresh = _production_configs()
    changed = [group for group, config in configs.items() if config != fresh[group]]
    if changed:
        pytest.fail(f"a test changed the shared production configuration of {changed} in place")


@pytest.fixture(scope="session")
def lan_config(production: Mapping[str, HostConfig]) -> HostConfig:
    """The LAN host's (gts-server) production configuration."""
    return production["lan"]


@pytest.fixture(scope="session")
def public_config(production: Mapping[str, HostConfig]) -> HostConfig:
    """The public host's (srv1178562) production configuration."""
    return production["public"]


@pytest.fixture
def group_data(tmp_path: Path) -> Path:
    """A scratch copy of group_data/ to break (pass it as ``build_host_config(group_data=...)``)."""
    dest = tmp_path / "group_data"
    shutil.copytree(GROUP_DATA, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def secrets_file(tmp_path: Path) -> Callable[[dict[str, Any]], SecretsFile]:
    """Write ``data`` (the secrets file's JSON, keyed by group) to the test's own secrets.json and
    return it as a source for ``build_host_config(secrets=...)``: a missing required secret gets a
    placeholder, as in offline validation."""
    def write(data: dict[str, Any]) -> SecretsFile:
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps(data))
        path.chmod(0o600)  # a secrets file readable by others is refused
        return SecretsFile(path, require=False)

    return write
