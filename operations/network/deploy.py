"""The LAN host's static address, with ifupdown: what Debian 12 uses on a server installed
without a desktop (no NetworkManager, no systemd-networkd configuration), and what the runbook's
"static IP on eno1" means on such a box.

The files are written for the next boot; the running address is changed only when doing so
cannot cut the connection this run is using: if an SSH connection arrives on the address that
would go away, the run refuses and says how to do it safely.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase, OperationError, StringCommand, operation

from iac.ops import files
from iac.packages import packages_present
from iac.render import render, text_file
from iac.upgrading import until_switch
from operations.host import HostConfig


class InterfaceState(FactBase):
    """IPv4 addresses (with prefix) of an interface, its default gateway, and the local
    addresses of established SSH connections."""

    def command(self, interface: str) -> str:
        i = shlex.quote(interface)
        return (f"echo addr $(ip -o -4 addr show dev {i} 2>/dev/null | awk '{{print $4}}'); "
                f"echo gw $(ip -4 route show default dev {i} 2>/dev/null | awk '{{print $3}}'); "
                "echo ssh $(ss -tnH state established '( sport = :22 )' 2>/dev/null | awk '{print $3}' "
                "| sed 's/:22$//'); "
                f"echo ifstate $(cat /run/network/ifstate.{i} 2>/dev/null)")

    def process(self, output: list[str]) -> dict:
        out: dict = {"addr": [], "gw": [], "ssh": [], "ifstate": []}
        for line in output:
            key, *values = line.split()
            out[key] = values
        return out


@operation()
def address_live(interface: str, address: str, gateway: str):
    """
    Ensure the running interface has exactly this address and default route.

    + interface: e.g. ``eno1``
    + address: with prefix length, e.g. ``192.168.1.230/24``
    + gateway: default route

    Refuses (fails before changing anything) when an address it would remove carries the SSH
    connection of this run.

    **Example:**

    .. code:: python

        address_live(name="eno1 address", interface="eno1", address="192.168.1.230/24",
                     gateway="192.168.1.1")
    """
    state = host.get_fact(InterfaceState, interface=interface)
    stale = [a for a in state["addr"] if a != address]
    if not stale and address in state["addr"] and state["gw"] == [gateway]:
        return
    in_use = [a for a in stale if a.split("/")[0] in state["ssh"]]
    if in_use:
        raise OperationError(
            f"refusing to move {interface} from {', '.join(in_use)} to {address}: this run's SSH connection "
            f"uses {in_use[0].split('/')[0]}. The new address is written for the next boot; apply it from the "
            f"console (or over Tailscale) with `ifdown {interface}; ifup {interface}`, or reboot"
        )
    q = shlex.quote
    yield StringCommand(f"ip addr replace {q(address)} dev {q(interface)}")
    for old in stale:
        yield StringCommand(f"ip addr del {q(old)} dev {q(interface)}")
    yield StringCommand(f"ip route replace default via {q(gateway)} dev {q(interface)}")


@operation()
def interface_adopted(interface: str, address: str):
    """
    Record an interface that already has its declared address as up for ifupdown.

    + interface: e.g. ``eno1``
    + address: the declared address with prefix length

    A host whose interface was configured by other means (the installer's DHCP, a provider,
    the sandbox) would otherwise make ``networking.service`` fail on its first ``ifup -a``
    (the address exists already) when ifupdown arrives or starts.

    **Example:**

    .. code:: python

        interface_adopted(name="eno1 known to ifupdown", interface="eno1", address="192.168.1.230/24")
    """
    state = host.get_fact(InterfaceState, interface=interface)
    if address not in state["addr"] or state.get("ifstate") == [interface]:
        return
    yield StringCommand(f"mkdir -p /run/network && echo {shlex.quote(interface)} > "
                        f"/run/network/ifstate.{shlex.quote(interface)}")


def static_network(config: HostConfig) -> None:
    net = config.network
    if net is None:
        return
    if until_switch():
        # the declared address is the old host's until the switch (iac/upgrading.py)
        host.noop(f"{net.interface}: {net.address} is the old host's until the switch; the first run after it "
                  "writes and applies it")
        return
    interface_adopted(name=f"{net.interface} known to ifupdown as up", interface=net.interface,
                      address=net.address)
    packages_present(["ifupdown", "iproute2"], config.base.apt_cache_hours, "the network")
    files.put(name="ifupdown: /etc/network/interfaces", src=text_file(render("etc/network/interfaces.j2")),
              dest="/etc/network/interfaces", mode="644")
    files.directory(name="ifupdown: interfaces.d", path="/etc/network/interfaces.d", mode="755")
    files.put(name=f"ifupdown: static address of {net.interface}",
              src=text_file(render("etc/network/interfaces.d/static.j2", net=net)),
              dest=f"/etc/network/interfaces.d/{net.interface}", mode="644")
    # Written before the address changes: the connection may stay, the name service must too.
    files.put(name="DNS servers and search domain (/etc/resolv.conf)",
              src=text_file(render("etc/resolv.conf.j2", net=net)), dest="/etc/resolv.conf", mode="644")
    address_live(name=f"{net.interface}: {net.address} via {net.gateway} (live)", interface=net.interface,
                 address=net.address, gateway=net.gateway)
