"""Rollback: a kept release made live again, its migrations reversed (or the pre-migrate backup)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from engine_common.locks import locked
from engine_common.safefs import owned_dir, read_record, root_dir

from .codes import EXIT_ROLLBACK, ReleaseFailed
from .decisions import (
    RELEASE_DIR_RE,
    inputs_hash,
    irreversible_migrations,
    reversal_targets,
    rollback_target,
    short,
    showmigrations_plan,
)
from .log import Log
from .manifest import damage
from .records import Records
from .settings import Settings


class RollingBack:
    """Rollback: a kept release made live again, its migrations reversed (or the pre-migrate backup)."""

    s: Settings
    log: Log
    records: Records

    # rollback: a kept release, its migrations reversed (or the pre-migrate backup), no rebuild
    def migrations(self, release: Path, venv: Path, alias: str) -> list[tuple[str, bool]]:
        """`showmigrations --plan` of ``release``'s own code against the database."""
        done = self.manage_run(release, venv,
                               ["showmigrations", "--plan", "--database", alias], capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseFailed(EXIT_ROLLBACK, f"showmigrations failed in {short(release.name)}: "
                                               f"{done.stderr.strip()[-300:]}")
        return showmigrations_plan(done.stdout)


    def rollback(self, to: str | None, from_backup: bool) -> int:
        s = self.s
        started = time.monotonic()
        with locked(s.lock_file):
            current = self.live()
            if current is None:
                raise ReleaseFailed(EXIT_ROLLBACK, "nothing is live: there is nothing to roll back")
            live, live_venv = current
            record = read_record(self.records.deployed_file) or {}
            # kept: the app's release directories root recorded as built, with a complete virtualenv
            kept = [p.name for p, _ in self.owned_entries(s.releases, RELEASE_DIR_RE.match)
                    if (b := self.records.built(p.name)) and self.records.venv(Path(b["venv"])) is not None
                    and owned_dir(Path(b["venv"]), s.uid)]
            target = s.releases / rollback_target(record.get("history", []), kept, live.name, to)
            target_venv = Path((self.records.built(target.name) or {})["venv"])
            damaged = damage(target, self.records, s.uid)
            if damaged and not damaged[0].startswith("no record"):
                raise ReleaseFailed(EXIT_ROLLBACK, f"the kept release {short(target.name)} changed since it was built "
                                                   f"({'; '.join(damaged[:3])}): release that revision again instead")
            self.commit = target.name[:40]
            self.log(f"rolling back from {short(live.name)} to {short(target.name)}")
            # what the older code does not know, per database and app, and whether it can be undone
            steps: list[tuple[str, str, str]] = []
            for alias in s.migrate_databases:
                applied = [m for m, done in self.migrations(live, live_venv, alias) if done]
                known = [m for m, _ in self.migrations(target, target_venv, alias)]
                for label, name in reversal_targets(applied, known).items():
                    steps.append((alias, label, name))
            if steps and not from_backup:
                blocked = []
                for alias, label, name in steps:
                    plan = self.manage_run(live, live_venv, ["migrate", label, name, "--plan", "--database", alias],
                                           capture_output=True, text=True)
                    blocked += irreversible_migrations(plan.stdout)
                if blocked:
                    when = record.get("deployed_at", "?")
                    raise ReleaseFailed(EXIT_ROLLBACK, (
                        f"refused: {', '.join(blocked)} cannot be reversed. The database backup taken before "
                        f"{short(live.name)} migrated ({when}) can bring back the schema and data as they were then: "
                        "rollback --from-backup (make rollback ... BACKUP=1). WARNING: every row written since "
                        "then is lost (a safety backup of the current database is taken first)."))
            root_dir(s.backup_dir)
            self.back_up()  # safety: the database as it is now
            self.schema_changed = True
            if from_backup:
                saved = record.get("pre_migrate_backups", [])
                if not saved:
                    raise ReleaseFailed(EXIT_ROLLBACK, f"{short(live.name)} left no pre-migrate backup (its migrate "
                                                       "applied nothing): roll back without --from-backup")
                self.log("restoring the pre-migrate backup of the current release: rows written since are lost")
                current, self.backups = self.backups, [(e, tg, Path(f)) for e, tg, f in saved]
                self.restore_databases()
                self.backups = current
            else:
                for alias, label, name in steps:
                    self.log(f"reversing {label} to {name} ({alias})")
                    done = self.manage_run(live, live_venv, ["migrate", label, name, "--noinput", "--database",
                                                             alias], capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.stderr.write(done.stdout + done.stderr)
                        self.restore_databases()
                        raise ReleaseFailed(EXIT_ROLLBACK, f"reversing {label} to {name} FAILED; the database is "
                                                           f"restored and {short(live.name)} stays live")
            self.go_live(self.commit, target, target_venv, current, rollback=True)
            self.record(self.commit, inputs_hash(s), target, rolled_back_from=live.name[:40])
            self.log(f"rolled back to {short(target.name)} in {time.monotonic() - started:.1f} s; the declared "
                     f"revision is still {s.revision!r}: set source.revision = {self.commit!r} to keep it")
        print(json.dumps({"app": s.app, "commit": self.commit, "from": live.name[:40], "reversed": [] if from_backup
                          else [f"{label} -> {name}" for _, label, name in steps], "from_backup": from_backup,
            "seconds": round(time.monotonic() - started, 1)}))
        return 0
