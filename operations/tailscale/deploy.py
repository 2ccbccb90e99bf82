"""Tailscale, the runbook's primary access path ("tailscale ssh gts@gts-server"). The sandbox turns
it off: its repository is unreachable from here. Joining the tailnet (`tailscale up`) needs a
person with an auth key and stays manual."""

from __future__ import annotations

from iac.ops import apt, files, systemd
from iac.packages import packages_present
from operations.host import HostConfig


def tailscale(config: HostConfig) -> None:
    if config.tailscale is None or not config.tailscale.enabled:
        return
    codename = config.debian().codename
    files.download(name="Tailscale signing key",
                   src=f"https://pkgs.tailscale.com/stable/debian/{codename}.noarmor.gpg",
                   dest="/usr/share/keyrings/tailscale-archive-keyring.gpg", mode="644")
    apt.repo(name="Tailscale repository",
             src="deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.gpg] "
                 f"https://pkgs.tailscale.com/stable/debian {codename} main",
             filename="tailscale")
    packages_present(["tailscale"], 0, "Tailscale")  # 0: see the new repository
    systemd.service(name="tailscaled running and enabled", service="tailscaled", running=True, enabled=True)
