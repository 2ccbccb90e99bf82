"""``World``: one named sandbox, its settings, and every operation on it (one mixin per concern)."""

from __future__ import annotations

import ipaddress
import os
import re

from .addresses import Addresses
from .common import REPO, WorldError
from .disk import BackupDisk
from .forge import Forge
from .hosts import Hosts
from .image import GoldenImage, Releases
from .ledger import Ledger
from .lifecycle import Lifecycle
from .processes import Processes
from .registry import Registry
from .standins import StandIns


class World(Lifecycle, Forge, StandIns, BackupDisk, Hosts, Processes, GoldenImage, Releases, Registry, Ledger,
            Addresses):
    """A named sandbox: its settings, its recorded resources and the operations on them."""

    def __init__(self, name: str | None = None, subnet: str | None = None) -> None:
        self.name = name or os.environ.get("SANDBOX_NAME") or "sbx"
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", self.name):
            raise WorldError(
                f"SANDBOX_NAME={self.name!r}: use 1-10 lower-case letters/digits starting with a "
                "letter (it prefixes interface names, which are limited to 15 characters)"
            )
        subnet = subnet or os.environ.get("SANDBOX_SUBNET") or "10.213.0.0/16"
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise WorldError(f"SANDBOX_SUBNET={subnet!r}: {exc}; use e.g. 10.213.0.0/16") from exc
        if self.subnet.prefixlen != 16 or not self.subnet.is_private:
            raise WorldError(
                f"SANDBOX_SUBNET={subnet!r}: give a private /16 such as 10.213.0.0/16; "
                "each host gets one /24 of it"
            )
        self.dir = REPO / ".sandbox" / self.name
        self.state_file = self.dir / "state.json"
