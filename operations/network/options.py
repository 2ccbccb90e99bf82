"""Options of the static network (network)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)

from iac.values import Fqdn, IPv4, IPv4Interface, Strict, _check, option_error


class NetworkSection(Strict):
    """A static address, applied with ifupdown (/etc/network/interfaces.d/), as Debian 12 servers
    installed without a desktop do."""

    interface: Annotated[str, _check(re.compile(r"[a-z][a-z0-9]{0,14}"), "interface name", "eno1")] = Field(
        description="Interface name.", examples=["eno1"])
    address: IPv4Interface = Field(description="Address with prefix length.", examples=["192.168.1.230/24"])
    gateway: IPv4 = Field(description="Default gateway.", examples=["192.168.1.1"])
    dns: list[IPv4] = Field(min_length=1, description="DNS servers (resolv.conf).", examples=[["192.168.1.1"]])
    search: list[Fqdn] = Field(default=[], description="DNS search domains.", examples=[["lan"]])

    @model_validator(mode="after")
    def _gateway_on_link(self) -> NetworkSection:
        net = ipaddress.IPv4Interface(self.address).network
        if ipaddress.IPv4Address(self.gateway) not in net:
            raise option_error("gateway", f"{self.gateway} is not in {net}, the network of `address`; the host "
                               f"would have no route to it (example: '{next(net.hosts())}')")
        return self
