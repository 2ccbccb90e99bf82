"""What the host exposes: sshd (keys only), the packet filter (default drop), security updates.

Stages: install (nftables, unattended-upgrades, the commit-confirm helper) -> configure ->
activate. sshd and the filter change only commit-confirm (operations/exposure/confirmed.py): a change
that would shut out the operator is reverted. The operation names say what must hold, so that
`make drift` reads "sshd: password login refused" or "packet filter: only tcp 22, 80, 443 open".
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host

from iac.ops import files, systemd
from iac.packages import packages_present
from iac.render import render
from iac.repo import FILES
from operations.exposure.confirmed import (
    NFTABLES_CONF,
    SSHD_DROPIN,
    ExposureState,
    confirmed_file,
    digest,
    second_login,
)
from operations.host import HostConfig

UNATTENDED = "/etc/apt/apt.conf.d/52iac-unattended-upgrades"

# sshd -T's spelling of the settings the drop-in makes
_SSHD_T_ROOT = {"prohibit-password": "without-password", "no": "no"}


def exposure(config: HostConfig) -> None:
    """sshd, the packet filter and security updates, as the model declares them."""
    # ---- install
    packages_present(["nftables", "unattended-upgrades", "openssh-server"], config.base.apt_cache_hours,
                     "exposure")
    files.put(name="Command /usr/local/sbin/iac-confirmed-change (commit-confirm changes)",
              src=str(FILES / "usr/local/sbin/iac-confirmed-change"), dest="/usr/local/sbin/iac-confirmed-change",
              mode="755")
    state = host.get_fact(ExposureState)
    login = second_login(config.ssh.port)

    # ---- configure + activate: sshd
    ssh = config.ssh
    sshd_text = render("etc/ssh/sshd_config.d/00-iac.conf.j2", ssh=ssh)
    password = "yes" if ssh.password_authentication else "no"
    effective = {"port": str(ssh.port), "permitrootlogin": _SSHD_T_ROOT[ssh.permit_root_login],
                 "passwordauthentication": password, "kbdinteractiveauthentication": password}
    sshd_ok = state["files"].get(SSHD_DROPIN) == digest(sshd_text) and state["sshd"] == effective
    login_kind = "password login allowed" if ssh.password_authentication else "password login refused"
    confirmed_file(name=f"sshd: {login_kind}, root login {ssh.permit_root_login}, port {ssh.port}",
                   kind="sshd", dest=SSHD_DROPIN, content=sshd_text, in_sync=sshd_ok, login=login)

    # ---- configure + activate: the packet filter
    if config.firewall.enabled:
        ports = config.open_tcp_ports()
        nft_text = render("etc/nftables.conf.j2", ports=ports, trusted_interfaces=config.firewall.trusted_interfaces)
        live_ok = state.get("nft-present") == "yes" and state.get("nft-live") == state.get("nft-recorded")
        nft_ok = state["files"].get(NFTABLES_CONF) == digest(nft_text) and live_ok
        confirmed_file(name=f"packet filter: inbound dropped except tcp {', '.join(map(str, ports))}",
                       kind="nft", dest=NFTABLES_CONF, content=nft_text, in_sync=nft_ok, login=login)
        # at boot, nftables.service loads /etc/nftables.conf
        systemd.service(name="nftables loads the filter at boot", service="nftables", enabled=True)

    # ---- security updates
    # apt's daily jobs now run: a converge's apt-get waits for their lock instead of failing
    files.put(name="apt waits for the package lock (daily updates may hold it)",
              src=StringIO("// Managed by this repo (operations/exposure/deploy.py).\nDPkg::Lock::Timeout \"300\";\n"),
              dest="/etc/apt/apt.conf.d/51iac-lock-timeout", mode="644")
    if config.updates.unattended_upgrades:
        files.put(name="Security updates daily, never an automatic reboot",
                  src=StringIO(render("etc/apt/apt.conf.d/52iac-unattended-upgrades.j2")), dest=UNATTENDED,
                  mode="644")
    else:
        files.file(name="No automatic security updates", path=UNATTENDED, present=False)
