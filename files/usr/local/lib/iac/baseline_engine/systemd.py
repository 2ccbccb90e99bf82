"""systemd: every unit file and drop-in in the directories systemd reads for the administrator
(not the packages' own /usr/lib/systemd, which the package check covers), every enabled unit,
and the effective properties of the units this repository declares."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from .findings import Finding
from .owners import DPKG_INFO, owned, package_enabled
from .settings import BaselineSettings

_UNIT_NAME = re.compile(r"[\w@.-]+\.(service|socket|timer|target|path)")

# where units and drop-ins an administrator (or an intruder) adds take effect; /run/systemd/transient
# (units systemd-run starts, gone when they stop) and the generators' directories are systemd's own
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/etc/systemd/system.control",
             "/run/systemd/system.control", "/usr/local/lib/systemd/system")
WANTS = re.compile(r"\.(wants|requires|upholds)$")
PROPERTIES = ("LoadState", "User", "Group", "DropInPaths", "FragmentPath", "NeedDaemonReload")


@functools.cache
def postinst_enabled(info: Path = DPKG_INFO) -> frozenset[str]:
    """Units a package's maintainer script enables with systemctl itself (systemd's own: getty@tty1,
    remote-fs.target, systemd-pstore): Debian's defaults, like deb-systemd-helper's record."""
    found: set[str] = set()
    for entry in os.scandir(info):
        if entry.name.endswith(".postinst"):
            try:
                text = Path(entry.path).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if "systemctl" in line and " enable " in line:
                    found.update(w for w in line.split() if _UNIT_NAME.fullmatch(w))
    return frozenset(found)


def _declared(settings: BaselineSettings) -> tuple[set[str], set[str], set[str]]:
    files = set(settings.files) | {a.path for a in settings.allowed}
    drop_ins = {d for u in settings.units for d in u.drop_ins}
    return files, drop_ins, set(settings.enabled)


def _is_enabled_by_package(parent: str, unit: str) -> bool:
    base = re.sub(r"@[^.]*\.", "@.", unit)  # getty@tty1.service -> getty@.service
    return (f"{parent}/{unit}" in package_enabled() or unit in postinst_enabled() or base in postinst_enabled())


def files(settings: BaselineSettings) -> list[Finding]:
    """Unit files, drop-ins and enablement links nobody declared: each one a finding, moved to the
    quarantine by a converge (a daemon-reload follows)."""
    declared, drop_ins, enabled = _declared(settings)
    found: list[Finding] = []
    for top in UNIT_DIRS:
        if not os.path.isdir(top):
            continue
        for dirpath, dirs, names in os.walk(top):
            parent = os.path.relpath(dirpath, top)
            for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
                path = os.path.join(dirpath, name)
                if path in declared or owned(path):
                    continue
                if WANTS.search(parent):
                    if name in enabled or _is_enabled_by_package(parent, name):
                        continue
                    found.append(Finding("units", path, "+", f"{name} enabled by hand ({parent}): not declared",
                                         "quarantine"))
                elif parent.endswith(".d"):
                    if path in drop_ins:
                        continue
                    found.append(Finding("systemd", path, "+", f"drop-in for {parent[:-2]} not declared: it changes "
                                         f"how {parent[:-2]} runs", "quarantine"))
                elif parent == "." and (name in package_enabled() or _is_enabled_by_package(".", name)):
                    continue  # an alias a package made (sshd.service -> ssh.service)
                else:
                    found.append(Finding("systemd", path, "+", "unit file not declared", "quarantine"))
    return found


def properties(settings: BaselineSettings) -> list[Finding]:
    """The declared units as systemd runs them: the user and group they declare, no drop-in
    beyond their own (a drop-in anywhere, even in a directory this check does not list, shows
    in DropInPaths)."""
    units = [u for u in settings.units]
    if not units:
        return []
    out = subprocess.run(["systemctl", "show", "--no-pager", *(f"-p{p}" for p in PROPERTIES), "--",
                          *(u.name for u in units)], capture_output=True, text=True, check=False).stdout
    blocks = out.split("\n\n")
    found: list[Finding] = []
    for unit, block in zip(units, blocks, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("LoadState") != "loaded":
            continue  # not there (yet): its own operation says so
        for key, want in (("User", unit.user), ("Group", unit.group)):
            if want and props.get(key, "") != want:
                found.append(Finding("units", unit.name, "~", f"runs as {key} {props.get(key) or 'root'}, "
                                     f"declared {want}", "restart", unit.name))
        if props.get("NeedDaemonReload") == "yes":
            found.append(Finding("units", unit.name, "~", "systemd runs a definition other than its files on disk "
                                 "(changed without a daemon-reload)", "restart", unit.name))
        extra = [p for p in props.get("DropInPaths", "").split() if p not in unit.drop_ins]
        for path in extra:
            if not any(path.startswith(top + "/") for top in UNIT_DIRS):
                found.append(Finding("systemd", path, "+", f"drop-in for {unit.name} not declared", "quarantine"))
    return found


def unit_of_drop_in(path: str) -> str | None:
    """The unit a drop-in file changes (``.../x.service.d/y.conf`` -> ``x.service``), else None."""
    parent = os.path.basename(os.path.dirname(path))
    return parent[:-2] if parent.endswith(".d") and _UNIT_NAME.fullmatch(parent[:-2]) else None
