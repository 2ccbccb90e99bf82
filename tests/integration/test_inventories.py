"""Both inventories describe the same hosts: the sandbox differs from production only where
stack.inventory.ALLOWED_OVERRIDES says it may (plus secret values and connection details)."""

from __future__ import annotations

from cli.validate import load_inventory
from stack.inventory import unexplained_differences
from stack.load import secret_paths
from tests.integration.conftest import REPO, Sandbox


def test_sandbox_and_production_differ_only_in_allowed_overrides(sandbox: Sandbox) -> None:
    production = load_inventory(REPO / "inventory.py")
    sandboxed = load_inventory(REPO / "sandbox/inventory.py")
    assert {g: [h[0] for h in hosts] for g, hosts in production.items()} == \
        {g: [h[0] for h in hosts] for g, hosts in sandboxed.items()}
    for group in production:
        prod = production[group][0][1]["config"].model_dump()
        sand = sandboxed[group][0][1]["config"].model_dump()
        secret = {".".join(p) for p in secret_paths(data=sand)}
        assert unexplained_differences(sand, prod, secret) == set(), group
