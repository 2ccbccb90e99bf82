"""Stage 5: what is live recorded, old releases pruned; a damaged live release set aside and put back."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine_common.safefs import UnsafePath, owned_dir, read_record, remove_owned_tree, write_record

from .codes import STEPS
from .decisions import RELEASE_DIR_RE, caches_to_prune, inputs_hash, releases_to_prune, venvs_to_prune
from .log import Log
from .records import Records, deployed_record, failure_after
from .settings import Settings


class Keeping:
    """Stage 5: what is live recorded, old releases pruned; a damaged live release set aside and put back."""

    s: Settings
    log: Log
    records: Records

    # 5. record + prune
    def record(self, commit: str, inputs: str, release: Path, rolled_back_from: str | None = None) -> None:
        s = self.s
        backups = [[e, t, str(f)] for e, t, f in self.backups] if self.schema_changed else []
        write_record(self.records.deployed_file, deployed_record(
            commit, s.revision, inputs, datetime.now(UTC), release.name, read_record(self.records.deployed_file),
            backups, rolled_back_from))


    def owned_entries(self, directory: Path, keep: Callable[[str], bool]) -> list[tuple[Path, float]]:
        """The app's own directories in ``directory`` whose names ``keep`` accepts, with their
        mtimes, listed without following any link."""
        uid = self.s.uid
        with os.scandir(directory) as entries:
            return [(Path(e.path), e.stat(follow_symlinks=False).st_mtime) for e in entries
                    if keep(e.name) and e.is_dir(follow_symlinks=False)
                    and e.stat(follow_symlinks=False).st_uid == uid]


    def prune(self, release: Path) -> None:
        """Old releases, caches and virtualenvs beyond keep_releases: only real directories of
        the app's user, removed without following links; root's records of them go too."""
        s = self.s
        dirs = self.owned_entries(s.releases, RELEASE_DIR_RE.match)
        # a release root has no record of cannot be rolled back to (made before root kept
        # records, or its build never finished): pruned at once, it is only code from git
        unrecorded = [p for p, _ in dirs if p != release and self.records.built(p.name) is None]
        for old in [*unrecorded, *releases_to_prune([d for d in dirs if d[0] not in unrecorded], s.keep_releases,
                                                    release)]:
            remove_owned_tree(old, s.uid)
            self.records.forget("built", old.name)
        # what an engine before root's records left in the app's directory (root's files there)
        for name in ("deployed.json", "failed.json", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(s.releases / name)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    os.unlink(s.releases / name)
        for prefix in (".frontend-", ".node_modules-"):
            caches = self.owned_entries(s.releases, lambda n, p=prefix: n.startswith(p))
            for old in caches_to_prune(caches, s.keep_releases):
                remove_owned_tree(old, s.uid)
                if prefix == ".frontend-":
                    self.records.forget("frontend", old.name.removeprefix(prefix))
        # a virtualenv goes with the last kept release that uses it (as root recorded it), and the
        # one live now (root's own link) is never removed
        used = [Path(b["venv"]) for p, _ in self.owned_entries(s.releases, RELEASE_DIR_RE.match)
                if (b := self.records.built(p.name))]
        if s.venv_link.is_symlink():
            used.append(Path(os.readlink(s.venv_link)))
        venvs = [p for p, _ in self.owned_entries(s.venv_link.parent, lambda n: n.startswith(f".{s.app}-"))]
        for old in venvs_to_prune(venvs, used):
            self.log(f"removing virtualenv {old} (no kept release uses it)")
            remove_owned_tree(old, s.uid)
            self.records.forget("venvs", old.name)
        cutoff = time.time() - 30 * 86400
        for f in s.backup_dir.iterdir():
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink()


    def live(self) -> tuple[Path, Path] | None:
        """The live release and virtualenv, read from root's own links (one level: never through
        a link the app could have put inside its trees)."""
        s = self.s
        if not (s.app_link.is_symlink() and s.venv_link.is_symlink()):
            return None
        return Path(os.readlink(s.app_link)), Path(os.readlink(s.venv_link))


    @property
    def deployed_file(self) -> Path:
        """What is live (the converge reads it: AppPaths.deployed is the same path)."""
        return self.records.deployed_file


    def failed_before(self, commit: str, inputs: str) -> dict | None:
        """The record of an earlier failure of this very release (same commit and inputs)."""
        record = read_record(self.records.failed_file)
        return record if record and record.get("commit") == commit and record.get("inputs") == inputs else None


    def note_failure(self, code: int) -> int:
        """Record a failed release; return the attempt count (1: the first failure, alerted)."""
        if not self.commit:
            return 1
        try:
            previous = read_record(self.records.failed_file)
            record = failure_after(previous, self.commit, inputs_hash(self.s), STEPS.get(code, "unknown"),
                                   datetime.now(UTC))
            write_record(self.records.failed_file, record)
        except (OSError, ValueError) as e:  # the record is a courtesy: never hide the failure itself
            self.log(f"could not record the failure: {e}")
            return 1
        return record["attempts"]


    def set_aside(self, release: Path, damaged: list[str]) -> dict[Path, Path]:
        """Move a damaged live release (and its virtualenv, if ``damaged`` names it: the one root
        recorded for it) aside, so that the rebuild makes new ones at the same paths; the running
        app keeps what it loaded. Only real directories of the app's user are moved."""
        s = self.s
        moved: dict[Path, Path] = {}
        built = self.records.built(release.name)
        venv = Path(built["venv"]) if built else None
        if not owned_dir(release, s.uid):
            raise UnsafePath(release, "the live release is not a directory of the app's")
        aside = release.with_name(f"{release.name}.damaged")
        # inside the app's own tree: as the app user
        self.as_user("rm", "-rf", "--", str(aside))
        self.as_user("mv", "-T", "--", str(release), str(aside))
        moved[release] = aside
        if venv and any(line.startswith("virtualenv") for line in damaged) and owned_dir(venv, s.uid):
            venv_aside = venv.with_name(f"{venv.name}.damaged")
            if os.path.lexists(venv_aside) and not remove_owned_tree(venv_aside, s.uid):
                raise UnsafePath(venv_aside, "not a directory of the app's")
            os.rename(venv, venv_aside)  # in root's /srv/venvs: the names there are root's
            moved[venv] = venv_aside
        return moved


    def remove_aside(self, path: Path, aside: Path) -> None:
        if path.parent == self.s.releases:
            self.as_user("rm", "-rf", "--", str(aside))
        else:
            remove_owned_tree(aside, self.s.uid)


    def put_back(self, moved: dict[Path, Path], release: str, built_before: dict | None,
                 live: tuple[Path, Path] | None) -> None:
        """The rebuild failed: the damaged release is live again, as it was before this run (a
        failure of any kind, not only a failed step)."""
        s = self.s
        for path, aside in moved.items():
            if path.parent == s.releases:
                self.as_user("rm", "-rf", "--", str(path))
                self.as_user("mv", "-T", "--", str(aside), str(path))
            else:
                if os.path.lexists(path):
                    remove_owned_tree(path, s.uid)
                os.rename(aside, path)
        if built_before is not None:
            self.records.set_built(release, built_before)
        if live:
            self.switch_to(*live)
        self.restart()
        self.log("the rebuild failed: the damaged release is back in place")
