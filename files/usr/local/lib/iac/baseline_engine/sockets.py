"""Every listening socket is declared, even one the packet filter drops: an undeclared listener is
a service nobody meant to run (its unit or cron entry is the thing to quarantine)."""

from __future__ import annotations

import os
import re

from .findings import Finding
from .owners import owned
from .settings import BaselineSettings

LISTEN = "0A"


def _hex_address(field: str) -> tuple[str, int]:
    addr, port = field.split(":")
    if len(addr) == 8:
        ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        ip = "*" if addr == "0" * 32 else ("::1" if addr == "0" * 24 + "01000000" else addr.lower())
    return ip, int(port, 16)


def listening(proc: str = "/proc/net") -> list[tuple[str, str, int, str]]:
    """(protocol, address, port, inode) of every TCP socket listening and UDP socket bound."""
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(os.path.join(proc, proto)) as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state, inode = parts[1], parts[3], parts[9]
            if proto.startswith("tcp") and state != LISTEN:
                continue
            if proto.startswith("udp") and parts[2].split(":")[1] != "0000":
                continue  # a connected UDP socket (a client), not a listener
            ip, port = _hex_address(local)
            if ip == "0.0.0.0":
                ip = "*"
            found.append((proto.rstrip("6"), ip, port, inode))
    return found


def owner(inode: str) -> tuple[str, str]:
    """The process holding a socket (its name and pid, for the report) and the systemd unit it
    runs in ("" when none can be told)."""
    target = f"socket:[{inode}]"
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    with open(f"/proc/{pid}/comm") as comm, open(f"/proc/{pid}/cgroup") as cgroup:
                        name, groups = comm.read().strip(), cgroup.read()
                    units = re.findall(r"/([A-Za-z0-9_.@:-]+\.service)(?:/|$)", groups, re.M)
                    return f"{name} (pid {pid})", units[-1] if units else ""
        except OSError:
            continue
    return "unknown", ""


def check(settings: BaselineSettings) -> list[Finding]:
    declared = [(p.port, p.address) for p in settings.ports]
    allowed = {a.path for a in settings.allowed}
    found = []
    for proto, ip, port, inode in listening():
        if ip in ("127.0.0.53", "127.0.0.54"):  # systemd-resolved's stub, where it runs
            continue
        if any(port == p and (a == "*" or a == ip) for p, a in declared):
            continue
        if f"{proto}/{port}" in allowed:
            continue
        who, unit = owner(inode)
        declared_unit = unit in {u.name for u in settings.units} or unit in settings.enabled
        # stopped only when nothing but this check would start it again and nobody else needs it: a
        # transient unit (systemd-run) or a unit file no package or declaration accounts for (the
        # systemd check quarantines that file); anything else (a package's service, cron) is reported
        stoppable = bool(unit) and not declared_unit and (
            os.path.exists(f"/run/systemd/transient/{unit}") or _undeclared_unit_file(unit, settings))
        found.append(Finding("sockets", f"{proto}/{port}", "+", f"listening on {ip}: not declared ({who}"
                             f"{', unit ' + unit if unit else ''})", "stop-unit" if stoppable else "report",
                             unit if stoppable else ""))
    return sorted(set(found), key=lambda f: f.path)


def _undeclared_unit_file(unit: str, settings: BaselineSettings) -> bool:
    path = f"/etc/systemd/system/{unit}"
    return os.path.isfile(path) and path not in settings.files and not owned(path)
