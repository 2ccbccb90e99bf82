"""A control group of its own for each host's container.

On a machine whose PID 1 is not systemd (this one: cgroup v1, no unit to keep), systemd-nspawn
puts a container at ``<its caller's cgroup>/payload``. Every supervisor started from the same
session has the same cgroup, so every container of every sandbox lived at ``/payload``: their
systemds then created, killed and removed one another's units' cgroups (two hosts with a unit of
the same name, such as two LAN hosts' ``pg-backup-gts.service``), and units failed with
219/CGROUP or were never collected. Each supervisor therefore moves itself first into a cgroup
named after its sandbox and host, in every hierarchy, below the cgroup it was started in (so the
machine's own accounting still holds it); its container's cgroups are created below that.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PREFIX = "iac-sandbox-"


def label(sandbox: str, role: str) -> str:
    return f"{PREFIX}{sandbox}-{role}"


def hierarchies() -> dict[Path, str]:
    """Each mounted cgroup hierarchy -> this process's path in it."""
    mounts: dict[Path, tuple[str, set[str]]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) >= 3 and fields[0] in ("cgroup", "cgroup2"):
            mounts[Path(left.split()[4])] = (fields[0], set(fields[2].split(",")))
    found: dict[Path, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = set(controllers.split(",")) if controllers else set()
        for mount, (fstype, options) in mounts.items():
            if (fstype == "cgroup2" and not wanted) or (fstype == "cgroup" and wanted and wanted <= options):
                found[mount] = path
    return found


def enter_own(name: str) -> list[Path]:
    """Move this process into ``<its cgroup>/<name>`` of every hierarchy that allows it; returns
    the cgroups it is in now (best effort: a hierarchy that refuses is left as it was)."""
    entered = []
    for mount, path in hierarchies().items():
        target = mount / path.lstrip("/") / name
        with contextlib.suppress(OSError):
            target.mkdir(exist_ok=True)
            (target / "cgroup.procs").write_text(f"{os.getpid()}\n")
            entered.append(target)
    return entered


def find(sandbox: str) -> list[Path]:
    """The cgroups of this sandbox's hosts, in every hierarchy (outermost ones)."""
    out = []
    for mount in hierarchies():
        for root, dirs, _ in os.walk(mount):
            for d in list(dirs):
                if d.startswith(f"{PREFIX}{sandbox}-"):
                    out.append(Path(root) / d)
                    dirs.remove(d)
    return out


def remove(cgroup: Path) -> bool:
    """rmdir a cgroup and what the container left inside it, innermost first; False while a
    process is still in one of them."""
    for root, dirs, _ in os.walk(cgroup, topdown=False):
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                try:
                    (Path(root) / d).rmdir()
                except OSError:
                    return False
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
