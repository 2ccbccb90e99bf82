"""The release engine: an app's declared revision made live, or nothing done if it already is."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from engine_common.locks import locked
from engine_common.safefs import read_record, root_dir

from . import commands
from .build import Building
from .decisions import build_key, inputs_hash, is_live_and_unchanged, release_dir_name, short
from .fetch import Fetching
from .golive import GoingLive
from .keep import Keeping
from .log import Log
from .manifest import damage
from .migrate import Migrating
from .records import Records
from .rollback import RollingBack
from .settings import Settings


class Release(Fetching, Building, Migrating, GoingLive, Keeping, RollingBack):
    """The release engine: an app's declared revision made live, or nothing done if it already is."""

    def __init__(self, s: Settings, log: Log | None = None) -> None:
        self.s = s
        self.log = log or Log(s.app)
        self.records = Records(s.state_dir)
        self.mirror = s.releases / "repo.git"
        self.backups: list[tuple[str, str, Path]] = []  # (engine, target, file)
        # whether migrate (or a data import) wrote to the database: only then does a later failure
        # restore the pre-migrate backup (which would lose rows the live release wrote since)
        self.schema_changed = False
        self.stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.commit: str | None = None  # once fetched


    def run(self) -> int:
        s = self.s
        for d in (s.releases, s.app_link.parent, s.venv_link.parent):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(s.releases, s.user, s.user)
        root_dir(s.state_dir)
        with locked(s.lock_file):
            commit = self.commit = self.fetch()
            release = s.releases / release_dir_name(commit, build_key(s))
            inputs = inputs_hash(s)
            previous = self.live()
            deployed = read_record(self.records.deployed_file)
            active = commands.run(["systemctl", "is-active", "--quiet", s.unit], check=False).returncode == 0
            live_release = previous[0] if previous else None
            damaged = damage(release, self.records, s.uid) if live_release == release else []
            if is_live_and_unchanged(live_release, release, deployed, inputs, active) and not damaged:
                self.log(f"release {short(commit)} is live and unchanged")
                return 0
            failed = self.failed_before(commit, inputs)
            if failed:
                # retried, never silently: each run says so (the alert went out the first time)
                self.log(f"retrying {s.revision} ({short(commit)}): the same release failed at step "
                         f"{failed['step']} {failed['attempts']} time(s) since {failed['first_at']}; fix the "
                         "revision or its settings if it fails again")
            if not damaged:
                return self.make_live(commit, release, previous, inputs)
            self.log(f"the live release {short(commit)} is damaged ({'; '.join(damaged)}): rebuilding it")
            built_before = self.records.built(release.name)
            aside = self.set_aside(release, damaged)
            try:
                code = self.make_live(commit, release, previous, inputs)
            except BaseException:
                self.put_back(aside, release.name, built_before, previous)
                raise
            for path, moved in aside.items():
                self.remove_aside(path, moved)
            return code


    def make_live(self, commit: str, release: Path, previous: tuple[Path, Path] | None, inputs: str) -> int:
        """Stages 2-5 (see the module docstring); ``previous``: the live release and virtualenv."""
        s = self.s
        venv = self.build(commit, release)
        root_dir(s.backup_dir)
        self.adopt_sqlite()
        self.back_up()
        self.migrate(release, venv, previous[0] if previous else None)
        self.release_commands(release, venv)
        self.go_live(commit, release, venv, previous)
        self.record(commit, inputs, release)
        self.records.failed_file.unlink(missing_ok=True)
        self.prune(release)
        self.log(f"release {short(commit)} ({s.revision}) is live")
        return 0
