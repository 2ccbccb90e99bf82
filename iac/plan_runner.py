"""pyinfra's own CLI, with a plan (``--json``) that names each operation as each host declared it.

pyinfra merges operations declared at the same place in the code into one plan entry across
hosts (the same line declares "Host name srv1178562" on one host and "Host name gts-server" on
the other) and names the entry after one of them. The drift gate must say what drifted on which
host, so each entry gets ``host_names``: host -> that host's own name for the operation.

Usage: python -m iac.plan_runner INVENTORY deploy.py --dry --json   (any pyinfra arguments)
"""

from __future__ import annotations

import sys

import pyinfra_cli.prints as prints
from pyinfra_cli.main import main

_build_plan_json = prints.build_plan_json


def build_plan_json(state) -> list[dict]:  # noqa: ANN001 (pyinfra's State)
    plan = _build_plan_json(state)
    for entry in plan:
        meta = state.op_meta[entry["op_hash"]]
        names: dict[str, str] = {}
        for host in state.inventory.iter_activated_hosts():
            if entry["op_hash"] not in state.ops[host]:
                continue
            own = state.get_op_data_for_host(host, entry["op_hash"]).global_arguments.get("name")
            names[host.name] = next((n for n in sorted(meta.names) if own and n.endswith(own)), entry["name"])
        entry["host_names"] = names
    return plan


prints.build_plan_json = build_plan_json

if __name__ == "__main__":
    sys.argv = ["pyinfra", *sys.argv[1:]]
    sys.exit(main())
