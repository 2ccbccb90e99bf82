"""What a repair takes away is kept, never deleted: moved under
``<quarantine>/<utc time>/<its original path>`` (root 0700) with a manifest of what was moved and
why, so an operator can look at it and put it back by hand."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from engine_common.safefs import root_dir

from .findings import Finding


class Quarantine:
    """One repair run's quarantine directory (made on first use)."""

    def __init__(self, root: str, now: datetime | None = None) -> None:
        self.root = Path(root)
        self.stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        self.dir = self.root / self.stamp
        self.moved: list[dict] = []

    def _target(self, path: str) -> Path:
        root_dir(self.root)
        root_dir(self.dir)
        target = self.dir / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return target

    def keep(self, finding: Finding, move: bool = True) -> Path:
        """Move (or copy, with ``move`` False) the finding's path into the quarantine, as it is: a
        link stays a link, modes and times are kept."""
        target = self._target(finding.path)
        if move:
            try:
                os.rename(finding.path, target)
            except OSError:  # another filesystem (/run): copy, then remove
                if os.path.isdir(finding.path) and not os.path.islink(finding.path):
                    shutil.copytree(finding.path, target, symlinks=True)
                    shutil.rmtree(finding.path)
                else:
                    shutil.copy2(finding.path, target, follow_symlinks=False)
                    os.unlink(finding.path)
        else:
            shutil.copy2(finding.path, target, follow_symlinks=False)
        self.moved.append({"path": finding.path, "kept": str(target), "moved": move, "category": finding.category,
                           "why": finding.what})
        return target

    def note(self, finding: Finding, what: str, secret: bool = False) -> None:
        """A repair that moves no file (a group membership, an account): what it was, in the
        manifest; ``secret`` text (a shadow line) goes to a file of its own (0600), never printed."""
        if secret:
            target = self._target(f"/accounts/{finding.path}")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(what + "\n")
            what = f"kept in {target}"
        else:
            root_dir(self.root)
            root_dir(self.dir)
        self.moved.append({"path": finding.path, "kept": what, "moved": False, "category": finding.category,
                           "why": finding.what})

    def write_manifest(self) -> Path | None:
        if not self.moved:
            return None
        manifest = self.dir / "MANIFEST.json"
        fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"at": self.stamp, "moved": self.moved}, f, indent=2)
            f.write("\n")
        return manifest
