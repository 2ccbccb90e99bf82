"""Which sandboxes exist on this machine, from any checkout (/run/iac-sandbox), so that no two
share a name or a subnet."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from pathlib import Path

from .common import WorldError, log, run


class Registry:
    """Claiming and releasing a sandbox's name and subnet, and finding free ones."""

    # The machine-wide registry of sandboxes (any checkout): name -> owner and subnet. /run is
    # emptied on reboot, as are the namespaces and links it describes.
    REGISTRY = Path("/run/iac-sandbox")

    @classmethod
    def registry_entries(cls) -> dict[str, dict]:
        """Live registrations; a stale one (its checkout is gone, or none of its network
        namespaces exists any more, e.g. after a crash) is removed so it cannot block a new run."""
        out = {}
        if cls.REGISTRY.is_dir():
            netns = set(run(["ip", "netns", "list"]).stdout.split())
            for f in cls.REGISTRY.glob("*.json"):
                entry = json.loads(f.read_text())
                owner_gone = not Path(entry["dir"]).is_dir()
                # a sandbox on its way up registers before it creates namespaces: give it time
                no_netns = (not any(n.startswith(f"{f.stem}-") for n in netns)
                            and time.time() - f.stat().st_mtime > 600)
                if owner_gone or no_netns:
                    why = "its checkout is gone" if owner_gone else "none of its namespaces exists"
                    log(f"removing stale registration of sandbox {f.stem!r} ({entry['dir']}): {why}")
                    f.unlink(missing_ok=True)
                    continue
                out[f.stem] = entry
        return out

    @classmethod
    def free_slot(cls, prefix: str = "sbx", avoid: tuple[str, ...] = ()) -> tuple[str, str]:
        """A sandbox name and /16 subnet that no registered sandbox and no route on this machine
        uses (for CI runs and tests that start a second sandbox beside a first)."""
        taken = cls.registry_entries()
        nets = [ipaddress.IPv4Network(e["subnet"]) for e in taken.values()]
        nets += [ipaddress.IPv4Network(a) for a in avoid]
        for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
            words = line.split()
            if words[:1] in (["local"], ["broadcast"]):
                words = words[1:]
            with contextlib.suppress(ValueError, IndexError):  # "default" and blank lines
                nets.append(ipaddress.IPv4Network(words[0], strict=False))
        name = next(f"{prefix}{i}" for i in range(2, 100) if f"{prefix}{i}" not in taken)
        for second in range(214, 250):
            candidate = ipaddress.IPv4Network(f"10.{second}.0.0/16")
            if not any(candidate.overlaps(n) for n in nets):
                return name, str(candidate)
        raise WorldError("no free 10.214-249.0.0/16 subnet on this machine")

    def claim(self) -> None:
        """Refuse a name or subnet another sandbox on this machine uses, then register ours."""
        for name, entry in self.registry_entries().items():
            mine = name == self.name and entry["dir"] == str(self.dir)
            if mine:
                continue
            if name == self.name:
                raise WorldError(
                    f"SANDBOX_NAME={self.name} is in use on this machine by {entry['dir']}; "
                    "take it down there (make sandbox-down) or pick another SANDBOX_NAME"
                )
            if ipaddress.IPv4Network(entry["subnet"]).overlaps(self.subnet):
                raise WorldError(
                    f"SANDBOX_SUBNET {self.subnet} overlaps sandbox {name!r} ({entry['subnet']}, "
                    f"{entry['dir']}); pick another, e.g. SANDBOX_SUBNET=10.214.0.0/16"
                )
        self.REGISTRY.mkdir(parents=True, exist_ok=True)
        (self.REGISTRY / f"{self.name}.json").write_text(
            json.dumps({"dir": str(self.dir), "subnet": str(self.subnet)}))

    def release(self) -> None:
        entry = self.registry_entries().get(self.name)
        if entry and entry["dir"] == str(self.dir):
            (self.REGISTRY / f"{self.name}.json").unlink()

    def _other_sandboxes_up(self) -> bool:
        return any(name != self.name for name in self.registry_entries())
