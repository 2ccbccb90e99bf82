"""Stage 3: the databases backed up, migrated, the release commands run; restored on failure."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from engine_common.safefs import regular_file_source

from . import commands
from .codes import EXIT_COMMAND, EXIT_MIGRATE, ReleaseFailed
from .commands import BACKUP_ENGINE, restore_command
from .decisions import migrate_wrote, short
from .log import Log
from .records import Records
from .settings import Settings


class Migrating:
    """Stage 3: the databases backed up, migrated, the release commands run; restored on failure."""

    s: Settings
    log: Log
    records: Records

    # 3. backup + migrate
    def unit(self, *args: str) -> None:
        commands.run(["systemctl", *args, self.s.unit], check=False)


    def snapshot(self, engine: str, source: str, name: str) -> Path:
        out = commands.run(["python3", str(BACKUP_ENGINE), "snapshot", engine, source, str(self.s.backup_dir), name],
                  capture_output=True, text=True)
        return Path(out.stdout.strip())


    def adopt_sqlite(self) -> None:
        """Taking over a hand-built host: the old process writes to the old file until it stops."""
        s = self.s
        src, dest = s.adopt_sqlite_from, s.sqlite_path
        if not (s.db_engine == "sqlite" and src and not Path(dest).exists() and Path(src).is_file()):
            return
        self.log(f"adopting {src} -> {dest} (old file kept as it is)")
        self.unit("stop")
        source = regular_file_source(src)
        shutil.copy2(source, s.backup_dir / f"adopted.{source.name}.{self.stamp}")
        commands.run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0750", str(Path(dest).parent)])
        # a consistent copy into root's own backup directory, then placed for the app by the backup
        # engine (never written through whatever the app may have put at the destination)
        copy = s.backup_dir / f"adopting.{self.stamp}.sqlite3"
        commands.run(["sqlite3", str(source), f".backup '{copy}'"])
        commands.run(restore_command("sqlite", dest, copy, s))
        copy.unlink()


    def back_up(self) -> None:
        s = self.s
        if s.db_engine == "sqlite" and Path(s.sqlite_path).is_file():
            self.backups.append(("sqlite", s.sqlite_path, self.snapshot("sqlite", s.sqlite_path, "db")))
        for db in s.pg_databases:
            self.backups.append(("postgresql", db, self.snapshot("postgresql", db, db)))
        self.log("database backups: " + (" ".join(f"{e}:{t}:{f}" for e, t, f in self.backups) or "none"))


    def restore_databases(self) -> None:
        if not self.schema_changed:
            if self.backups:
                self.log("migrate applied nothing: the database is not restored (rows written since the backup "
                         "are kept)")
            return
        for engine, target, dump in self.backups:
            self.log(f"restoring {target} from {dump}")
            commands.run(restore_command(engine, target, Path(dump), self.s))


    def manage_run(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
                   writes_release: bool = False, **kw) -> subprocess.CompletedProcess:
        """manage.py ARGS of ``release`` with ``venv``, as the app with its environment, confined
        as its units are (``writes_release``: a release command, which may write into the
        release it belongs to, e.g. compressed static files)."""
        cmd = commands.with_app_env(self.s, [f"{venv}/bin/python", "manage.py", *args], release / self.s.manage_dir,
                                    extra_env, writable=[release] if writes_release else None)
        return commands.run(cmd, check=False, **kw)


    def manage(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
               writes_release: bool = False, **kw) -> bool:
        return self.manage_run(release, venv, args, extra_env, writes_release, **kw).returncode == 0


    def needs_sqlite_import(self) -> bool:
        s = self.s
        if not (s.db_engine == "postgresql" and s.import_sqlite_from and Path(s.import_sqlite_from).is_file()):
            return False
        out = commands.run(["runuser", "-u", "postgres", "--", "psql", "-d", s.pg_main_db, "-tAc",
                   "select to_regclass('public.django_migrations') is null"], capture_output=True, text=True)
        return out.stdout.strip() == "t"


    def migrate(self, release: Path, venv: Path, previous: Path | None) -> None:
        s = self.s
        export = s.backup_dir / f"import.{self.stamp}.json"
        importing = self.needs_sqlite_import()
        if importing:
            # moving from SQLite to PostgreSQL: only into a database Django has never migrated
            self.log(f"moving the data of {s.import_sqlite_from} into PostgreSQL database {s.pg_main_db} "
                     "(the app stops meanwhile)")
            self.unit("stop")
            source = regular_file_source(s.import_sqlite_from)
            shutil.copy2(source, s.backup_dir / f"import.{source.name}.{self.stamp}")
            use_sqlite, sqlite_path = s.sqlite_env
            sqlite_env = {k: v for k, v in ((use_sqlite, "1"), (sqlite_path, s.import_sqlite_from)) if k}
            with export.open("w") as out:
                ok = self.manage(release, venv, ["migrate", "--noinput"], sqlite_env) and self.manage(
                    release, venv, ["dumpdata", "--natural-foreign", "--natural-primary", "-e", "contenttypes",
                                    "-e", "auth.permission", "-e", "sessions"], sqlite_env, stdout=out)
            if not ok:
                self.unit("start")
                raise ReleaseFailed(EXIT_MIGRATE, f"reading {s.import_sqlite_from} FAILED; nothing was written to "
                                                  "PostgreSQL")
        self.schema_changed = importing
        for alias in s.migrate_databases:
            done = self.manage_run(release, venv, ["migrate", "--noinput", "--database", alias],
                                   stdout=subprocess.PIPE, text=True)
            sys.stderr.write(done.stdout)
            self.schema_changed |= migrate_wrote(done.returncode, done.stdout)
            if done.returncode != 0:
                live = f"; the live release stays {short(previous.name)}" if previous else ""
                self.log(f"migration FAILED: restoring the database(s){live}")
                self.restore_databases()
                raise ReleaseFailed(EXIT_MIGRATE, "migration FAILED")
        if importing:
            with export.open() as data:
                if not self.manage(release, venv, ["loaddata", "--format", "json", "-"], stdin=data):
                    self.log("loading the SQLite data into PostgreSQL FAILED: restoring the empty database")
                    self.restore_databases()
                    raise ReleaseFailed(EXIT_MIGRATE, "loading the SQLite data FAILED")
            self.log(f"moved {export.read_text().count(chr(34) + 'model' + chr(34) + ':')} objects from SQLite")


    def release_commands(self, release: Path, venv: Path) -> None:
        """The app's own release steps (manage.py compress, ...), after migrate: they may need the
        new schema. One failing restores the database and stops; the old release keeps serving."""
        for command in self.s.release_commands:
            self.log(f"release command: manage.py {' '.join(command)}")
            if not self.manage(release, venv, command, writes_release=True):
                self.log(f"release command manage.py {command[0]} FAILED: restoring the database(s)")
                self.restore_databases()
                raise ReleaseFailed(EXIT_COMMAND, f"release command manage.py {' '.join(command)} FAILED; the live "
                                                  "release is untouched")
