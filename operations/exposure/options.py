"""Options of what the host exposes: sshd, the packet filter, security updates."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
)

from iac.values import Port, SshPublicKey, Strict, _check


class SshSection(Strict):
    """sshd, through a drop-in that sorts before any other (sshd keeps the first value it reads).

    A change is applied commit-confirm style: `sshd -t`, a revert armed on the host, reload, a
    second, new SSH connection from this machine, and only then the revert disarmed."""

    port: Port = Field(default=22, description="The port sshd listens on.", examples=[22])
    password_authentication: bool = Field(
        default=False,
        description="Password and keyboard-interactive login. Off: keys only (the runbooks left it on).",
        examples=[False])
    permit_root_login: Literal["prohibit-password", "no"] = Field(
        default="prohibit-password",
        description="Root login: by key only ('prohibit-password'), or not at all ('no': the inventory must "
                    "then connect as the admin with sudo).",
        examples=["prohibit-password"])
    root_authorized_keys: list[SshPublicKey] | None = Field(
        default=None,
        description="The only keys that may log in as root (root's authorized_keys): a key not listed is drift, "
                    "removed by a converge commit-confirm style (kept in the quarantine). Unset (not declared "
                    "yet): the keys on the host are reported as drift naming this option, never removed; [] "
                    "means no key at all.",
        examples=[["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"]])


class FirewallSection(Strict):
    """nftables, default-drop inbound. Open: loopback, replies to the host's own traffic, ICMP,
    and exactly the TCP ports the model declares (HostConfig.open_tcp_ports: sshd, every app's
    nginx port, 443 for TLS sites, `extra_tcp_ports`)."""

    enabled: bool = Field(default=True, description="Manage the packet filter (table inet iac).", examples=[True])
    extra_tcp_ports: list[Port] = Field(default=[], description="Further TCP ports to open.", examples=[[5000]])
    trusted_interfaces: list[Annotated[str, _check(re.compile(r"[a-z][a-z0-9]{0,14}"), "interface name",
                                                   "tailscale0")]] = Field(
        default=[], description="Interfaces whose inbound traffic is accepted whole (a VPN such as Tailscale).",
        examples=[["tailscale0"]])


class UpdatesSection(Strict):
    unattended_upgrades: bool = Field(
        default=True, description="Install security updates daily (unattended-upgrades), never rebooting.",
        examples=[True])
