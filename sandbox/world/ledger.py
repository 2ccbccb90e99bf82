"""The state ledger, ``.sandbox/<name>/state.json``: every resource is recorded in it *before* it
is created, so ``down`` removes exactly that. It also holds the subnet the sandbox was created with."""

from __future__ import annotations

import ipaddress
import json

from .common import WorldError, log


class Ledger:
    """Reading and writing the ledger, and holding a sandbox to the subnet it records."""

    def load(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"name": self.name, "subnet": str(self.subnet), "resources": []}

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def record(self, kind: str, **attrs) -> None:
        """Write down a resource before creating it (so a crash mid-way is still undone)."""
        state = self.load()
        entry = {"kind": kind, **attrs}
        if entry not in state["resources"]:
            state["resources"].append(entry)
            self.save(state)

    def forget(self, entry: dict) -> None:
        state = self.load()
        state["resources"] = [r for r in state["resources"] if r != entry]
        self.save(state)

    def recorded_subnet(self) -> ipaddress.IPv4Network | None:
        """The subnet this sandbox was created with (None while nothing of it exists)."""
        if not self.state_file.exists():
            return None
        state = self.load()
        if not state["resources"]:
            return None
        if "subnet" in state:
            return ipaddress.IPv4Network(state["subnet"])
        # a ledger written before the subnet was recorded: the stand-ins' address tells it
        for r in state["resources"]:
            if r["kind"] == "addr":
                return ipaddress.IPv4Network(r["cidr"], strict=False).supernet(new_prefix=16)
        return None

    def check_subnet(self) -> None:
        """Refuse to bring up an existing sandbox on another subnet (before anything changes).

        Its addresses, NAT rules, ssh config, pinned host keys and the hosts' own network
        configuration all derive from the subnet it was created with."""
        recorded = self.recorded_subnet()
        if recorded is not None and recorded != self.subnet:
            raise WorldError(
                f"sandbox {self.name} exists with SANDBOX_SUBNET={recorded} (recorded in {self.state_file}), "
                f"not SANDBOX_SUBNET={self.subnet}: its subnet cannot change while it exists. Either keep "
                f"SANDBOX_SUBNET={recorded}, or take it down first (`make sandbox-down SANDBOX_NAME={self.name}`: "
                f"down uses the recorded subnet) and then run `make sandbox SANDBOX_NAME={self.name} "
                f"SANDBOX_SUBNET={self.subnet}`"
            )

    def adopt_recorded_subnet(self) -> None:
        """For ``down`` and ``status``: the ledger's subnet wins over SANDBOX_SUBNET."""
        recorded = self.recorded_subnet()
        if recorded is not None and recorded != self.subnet:
            log(f"sandbox {self.name} was created with SANDBOX_SUBNET={recorded}; using that "
                f"(not {self.subnet})")
            self.subnet = recorded
