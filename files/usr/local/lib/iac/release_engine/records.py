"""What root records about an app's releases, in a directory only root writes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine_common.safefs import read_record, root_dir, write_record

HISTORY_KEPT = 20


class Records:
    """What root recorded about an app's releases, in a directory only root writes
    (AppPaths.state_dir): what is live (deployed.json, read by the converge's DeployedRelease
    fact), the last failure, each built release (its virtualenv, and the manifest of its files
    once it went live), each virtualenv's packages, each complete front-end build. Nothing the app
    can write is ever taken for one of these."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def deployed_file(self) -> Path:
        return self.dir / "deployed.json"

    @property
    def failed_file(self) -> Path:
        return self.dir / "failed.json"

    def built(self, release: str) -> dict | None:
        return read_record(self.dir / "built" / f"{release}.json")

    def _kind(self, kind: str) -> Path:
        """The records of one kind, in their root-only directory (the top one root-only too)."""
        root_dir(self.dir)
        return root_dir(self.dir / kind)

    def set_built(self, release: str, record: dict) -> None:
        write_record(self._kind("built") / f"{release}.json", record)

    def venv(self, venv: Path) -> dict | None:
        return read_record(self.dir / "venvs" / f"{venv.name}.json")

    def set_venv(self, venv: Path, packages: list[str]) -> None:
        write_record(self._kind("venvs") / f"{venv.name}.json", {"packages": packages})

    def frontend(self, buildhash: str) -> dict | None:
        return read_record(self.dir / "frontend" / f"{buildhash}.json")

    def set_frontend(self, buildhash: str) -> None:
        write_record(self._kind("frontend") / f"{buildhash}.json", {"complete": True})

    def forget(self, kind: str, name: str) -> None:
        (self.dir / kind / f"{name}.json").unlink(missing_ok=True)


def deployed_record(commit: str, revision: str, inputs: str, now: datetime, release: str = "",
                    previous: dict | None = None, backups: list | None = None,
                    rolled_back_from: str | None = None) -> dict:
    """What is live (read by the converge's DeployedRelease fact: commit and inputs), the
    pre-migrate backups a rollback --from-backup restores, and the releases live before it
    (newest last), which rollback picks from."""
    history = [] if previous is None else [*previous.get("history", []), {
        k: previous[k] for k in ("commit", "release", "deployed_at") if k in previous}]
    record = {"commit": commit, "revision": revision, "inputs": inputs,
              "deployed_at": now.isoformat(timespec="seconds"), "release": release,
              "pre_migrate_backups": backups or [], "history": history[-HISTORY_KEPT:]}
    if rolled_back_from:
        record["rolled_back_from"] = rolled_back_from
    return record


def failure_after(previous: dict | None, commit: str, inputs: str, step: str, now: datetime) -> dict:
    """The record of a failed release (``<releases>/failed.json``): the same commit and inputs
    failing again counts attempts; anything else starts at one."""
    same = previous is not None and previous.get("commit") == commit and previous.get("inputs") == inputs
    return {"commit": commit, "inputs": inputs, "step": step, "at": now.isoformat(timespec="seconds"),
            "attempts": previous["attempts"] + 1 if same and previous else 1,
            "first_at": previous.get("first_at", previous.get("at")) if same and previous else
            now.isoformat(timespec="seconds")}
