"""Both inventories describe the same hosts, reached the same way: the sandbox differs from
production only where stack.inventory.ALLOWED_OVERRIDES says it may (plus secret values), and in
how a host is reached only in its address, key and known hosts (``CONNECTION_MAY_DIFFER``)."""

from __future__ import annotations

from cli.validate import load_inventory
from iac import sudo
from stack.inventory import unexplained_differences
from stack.load import secret_paths
from tests.integration.conftest import REPO, Sandbox

# what the sandbox's connection to a host may set differently from production's (the user, sudo,
# its password's source, the staging directory and host key checking may not)
CONNECTION_MAY_DIFFER = {"ssh_hostname", "ssh_key", "ssh_known_hosts_file"}
NOT_CONNECTION = {"config", "stack", "stack_values"}


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


def test_sandbox_and_production_reach_each_host_the_same_way(sandbox: Sandbox) -> None:
    production = load_inventory(REPO / "inventory.py")
    sandboxed = load_inventory(REPO / "sandbox/inventory.py")
    for group in production:
        prod, sand = production[group][0][1], sandboxed[group][0][1]
        keys = (set(prod) | set(sand)) - NOT_CONNECTION - CONNECTION_MAY_DIFFER - {sudo.DATA_KEY}
        assert {k: sand.get(k) for k in keys} == {k: prod.get(k) for k in keys}, group
        # through sudo, both take the password the same way (the secrets file, else the terminal)
        assert type(sand.get(sudo.DATA_KEY)) is type(prod.get(sudo.DATA_KEY)), group
    lan = sandboxed["lan"][0][1]
    assert (lan["ssh_user"], lan["_sudo"]) == ("gts", True) and lan[sudo.DATA_KEY].stored
