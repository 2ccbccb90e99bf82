"""The release engine's stages without a host: settings, decisions (live and unchanged, which
releases and caches to prune, the virtualenv key), fetching from a real git repository, the
record it writes, and how manage.py steps get the app's environment (through systemd, never a
shell).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine_common import safefs
from release_engine import cli, codes, commands, decisions, engine, log, manifest, records
from release_engine.settings import SETTINGS_DIR, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
Release = engine.Release


def settings(tmp_path: Path, **overrides) -> Settings:
    data = {
        "app": "demo", "user": os.environ.get("USER", "root"), "repo_url": str(tmp_path / "origin.git"),
        "revision": "v2", "manage_dir": "", "env_file": str(tmp_path / "demo.env"), "unit": "gunicorn-demo",
        "unit_file": str(tmp_path / "demo.service"), "releases": str(tmp_path / "releases"),
        "state_dir": str(tmp_path / "state"), "lock_file": str(tmp_path / "run/release-demo.lock"),
        "key_path": "/home/demo/.ssh/id_ed25519", "known_hosts": "/etc/iac/apps/demo.known_hosts",
        "candidate_unit": "iac-candidate-demo", "candidate_socket": "/run/iac-candidate-demo/gunicorn.sock",
        "app_link": str(tmp_path / "apps/demo"), "venv_link": str(tmp_path / "venvs/demo"), "keep_releases": 3,
        "backup_dir": str(tmp_path / "backups"), "db_engine": "sqlite", "sqlite_path": str(tmp_path / "db.sqlite3"),
        "health_socket": "/run/gunicorn-demo/gunicorn.sock", "health_headers": ["Host:demo.example"],
        **overrides,
    }
    (tmp_path / "demo.release").write_text(json.dumps(data))
    return Settings.load("demo", tmp_path)


def test_settings_load_paths_and_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.releases == tmp_path / "releases" and isinstance(s.app_link, Path)
    assert s.migrate_databases == ["default"] and s.frontend_inputs is None
    assert s.key_path == "/home/demo/.ssh/id_ed25519" and s.state_dir == tmp_path / "state"
    assert "StrictHostKeyChecking=yes" in s.git_ssh_command() and s.known_hosts in s.git_ssh_command()


def test_unknown_settings_key_is_an_error(tmp_path: Path) -> None:
    """A settings file from another version of the repo is refused, not half-read."""
    settings(tmp_path)
    data = json.loads((tmp_path / "demo.release").read_text()) | {"surprise": 1}
    (tmp_path / "demo.release").write_text(json.dumps(data))
    with pytest.raises(SettingsError, match="unknown key.s. surprise"):
        Settings.load("demo", tmp_path)


def test_a_mistyped_or_missing_setting_is_an_error(tmp_path: Path) -> None:
    """The contract is typed both ways: the converge cannot write, nor the engine read, a wrong type."""
    settings(tmp_path)
    data = json.loads((tmp_path / "demo.release").read_text())
    with pytest.raises(SettingsError, match="keep_releases"):
        Settings.from_dict(data | {"keep_releases": "3"})
    with pytest.raises(SettingsError, match="keep_releases"):
        Settings.from_dict(data | {"keep_releases": True})
    with pytest.raises(SettingsError, match="user"):
        Settings.from_dict({k: v for k, v in data.items() if k != "user"})
    loaded = Settings.from_dict(data)
    assert Settings.from_dict(loaded.to_dict()) == loaded
    assert {k: v for k, v in loaded.to_dict().items() if k in data} == data


def test_inputs_hash_covers_env_unit_and_settings(tmp_path: Path) -> None:
    s = settings(tmp_path)
    Path(s.env_file).write_text('A="1"\n')
    Path(s.unit_file).write_text("[Service]\n")
    first = decisions.inputs_hash(s)
    Path(s.env_file).write_text('A="2"\n')
    assert decisions.inputs_hash(s) != first
    # the same as the converge computes (operations/app/deploy.py: sha256 of the three texts)
    import hashlib
    texts = Path(s.env_file).read_text() + Path(s.unit_file).read_text() + s.settings_file.read_text()
    assert decisions.inputs_hash(s) == hashlib.sha256(texts.encode()).hexdigest()


def test_live_and_unchanged_needs_the_same_release_inputs_and_a_running_unit(tmp_path: Path) -> None:
    release = tmp_path / "releases" / ("a" * 40)
    deployed = {"commit": "a" * 40, "inputs": "h"}
    live = decisions.is_live_and_unchanged
    assert live(release, release, deployed, "h", True)
    assert not live(release, release, deployed, "other", True)   # env, unit or settings changed
    assert not live(release, release, deployed, "h", False)      # the unit is down
    assert not live(None, release, deployed, "h", True)          # nothing live (first release)
    assert not live(tmp_path / "old", release, deployed, "h", True)


def test_prune_keeps_the_newest_and_never_the_live_release(tmp_path: Path) -> None:
    dirs = [(tmp_path / f"r{i}", float(i)) for i in range(6)]
    for p, _ in dirs:
        p.mkdir()
    # newest three kept; r0 is live (a rollback to an old release) and is kept too
    assert decisions.releases_to_prune(dirs, 3, tmp_path / "r0") == [tmp_path / "r2", tmp_path / "r1"]
    assert decisions.releases_to_prune(dirs, 3, tmp_path / "r5") == [tmp_path / "r2", tmp_path / "r1",
                                                                          tmp_path / "r0"]
    assert decisions.caches_to_prune(dirs, 5) == [tmp_path / "r0"]


def test_virtualenv_key_follows_requirements_and_python() -> None:
    key = decisions.venv_key
    assert key(b"Django==5.0\n", "Python 3.11.2\n") == key(b"Django==5.0\n", "Python 3.11.2\n")
    assert key(b"Django==5.0\n", "Python 3.11.2\n") != key(b"Django==5.1\n", "Python 3.11.2\n")
    assert key(b"Django==5.0\n", "Python 3.11.2\n") != key(b"Django==5.0\n", "Python 3.12.0\n")
    assert len(key(b"", "")) == 16


def test_record_is_what_the_converge_reads(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    first = records.deployed_record("c" * 40, "v2", "h", now, release="c" * 40 + "-k")
    assert first == {"commit": "c" * 40, "revision": "v2", "inputs": "h", "deployed_at": "2026-11-23T12:00:00+00:00",
                     "release": "c" * 40 + "-k", "pre_migrate_backups": [], "history": []}
    second = records.deployed_record("d" * 40, "v3", "h2", now, release="d" * 40 + "-k", previous=first,
                                            backups=[["sqlite", "/var/lib/x/db.sqlite3", "/var/backups/iac/x/db.1"]])
    assert second["history"] == [{"commit": "c" * 40, "release": "c" * 40 + "-k",
                                  "deployed_at": "2026-11-23T12:00:00+00:00"}]
    assert second["pre_migrate_backups"][0][0] == "sqlite"
    third = records.deployed_record("e" * 40, "v4", "h", now, previous=second, rolled_back_from="d" * 40)
    assert [h["commit"] for h in third["history"]] == ["c" * 40, "d" * 40] and third["rolled_back_from"] == "d" * 40


def test_manage_steps_run_through_systemd_with_the_env_file(tmp_path: Path) -> None:
    """No shell reads the env file: systemd-run with EnvironmentFile=, as the unit; extra
    variables through env(1) so that they win over the file's."""
    s = settings(tmp_path)
    cmd = commands.with_app_env(s, ["python", "manage.py", "migrate"], tmp_path, {"USE_SQLITE": "1"})
    assert cmd[:1] == ["systemd-run"] and "--pipe" in cmd and "--wait" in cmd
    assert f"EnvironmentFile={s.env_file}" in cmd and f"--uid={s.user}" in cmd
    assert cmd[cmd.index("--") + 1:] == ["/usr/bin/env", "USE_SQLITE=1", "python", "manage.py", "migrate"]
    assert not any(part in ("bash", "sh", "source", ".") for part in cmd)


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "manage.py").write_text("print('v2')\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "v2", cwd=work)
    _git("tag", "v2", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(tmp_path / "origin.git"))
    return tmp_path / "origin.git", _git("rev-parse", "v2", cwd=work)


def _here(s, cmd, writable, cwd=None, home_readable=False, env=None) -> list[str]:
    """as_app without systemd: the same command, in ``cwd``, with ``env`` (no confinement here)."""
    return ["env", *(["-C", str(cwd)] if cwd else []), *(f"{k}={v}" for k, v in (env or {}).items()), *cmd]


@pytest.fixture
def as_self(monkeypatch):
    """Run the engine's commands as the current user (runuser needs a real app user, systemd-run
    a host's systemd)."""
    monkeypatch.setattr(commands, "as_user", lambda user, cmd: cmd)
    monkeypatch.setattr(commands, "as_app", _here)


def test_fetch_resolves_the_revision_to_its_commit(tmp_path: Path, origin, as_self) -> None:
    s = settings(tmp_path)
    s.releases.mkdir()
    release = Release(s, log=lambda msg: None)
    assert release.fetch() == origin[1]
    assert release.fetch() == origin[1]  # second time: fetch into the existing mirror


def test_fetch_of_an_unknown_revision_or_remote_fails_with_its_code(tmp_path: Path, origin, as_self) -> None:
    s = settings(tmp_path, revision="v9")
    s.releases.mkdir()
    with pytest.raises(codes.ReleaseFailed) as failed:
        Release(s, log=lambda msg: None).fetch()
    assert failed.value.code == codes.EXIT_REVISION and "'v9' does not exist" in str(failed.value)
    other = tmp_path / "other"
    other.mkdir()
    gone = settings(other, repo_url=str(tmp_path / "nope.git"))
    gone.releases.mkdir()
    with pytest.raises(codes.ReleaseFailed) as failed:
        Release(gone, log=lambda msg: None).fetch()
    assert failed.value.code == codes.EXIT_FETCH and "make deploy-keys" in str(failed.value)


def test_switch_replaces_both_links_atomically(tmp_path: Path) -> None:
    s = settings(tmp_path)
    venv = tmp_path / "venvs/.demo-abc"
    venv.mkdir(parents=True)
    for name in ("r1", "r2"):
        (s.releases / name).mkdir(parents=True)
        (s.releases / name / ".venv").symlink_to(venv)
    s.app_link.parent.mkdir(parents=True)
    release = Release(s, log=lambda msg: None)
    release.switch_to(s.releases / "r1", venv)
    release.switch_to(s.releases / "r2", venv)
    assert os.readlink(s.app_link) == str(s.releases / "r2") and os.readlink(s.venv_link) == str(venv)
    assert not Path(f"{s.app_link}.new").exists()


def test_usage_without_arguments_exits_2(capsys) -> None:
    assert cli.main([]) == 2
    assert "release APP" in capsys.readouterr().err


# ---- release directories keyed by commit + build settings; the app's extra steps -----------------


def test_release_directory_changes_with_every_build_setting_and_only_with_those(tmp_path: Path) -> None:
    """A settings change that affects the build (static_dir, extra requirements, front end) builds a
    new directory, so a live one is never rebuilt in place; one that does not (health path,
    keep_releases) reuses the built directory."""
    base = decisions.build_key(settings(tmp_path))
    for change in ({"static_dir": "static-collected"}, {"extra_requirements": ["gunicorn==23.0.0"]},
                   {"frontend_inputs": ["frontend"]}, {"manage_dir": "src"}, {"static_root_env": ""}):
        assert decisions.build_key(settings(tmp_path, **change)) != base, change
    for same in ({"health_url": "http://localhost/status"}, {"keep_releases": 5}, {"revision": "main"},
                 {"release_commands": [["compress"]]}):
        assert decisions.build_key(settings(tmp_path, **same)) == base, same
    name = decisions.release_dir_name("a" * 40, base)
    assert decisions.RELEASE_DIR_RE.match(name) and decisions.RELEASE_DIR_RE.match("b" * 40)
    assert not decisions.RELEASE_DIR_RE.match("repo.git") and not decisions.RELEASE_DIR_RE.match(
        ".frontend-0123456789abcdef")


def test_virtualenv_key_covers_extra_requirements() -> None:
    plain = decisions.venv_key(b"Django==5.2\n", "Python 3.11.2\n")
    assert decisions.venv_key(b"Django==5.2\n", "Python 3.11.2\n", []) == plain
    with_gunicorn = decisions.venv_key(b"Django==5.2\n", "Python 3.11.2\n", ["gunicorn==23.0.0"])
    assert with_gunicorn != plain
    assert decisions.venv_key(b"Django==5.2\n", "Python 3.11.2\n", ["gunicorn==23.0.1"]) != with_gunicorn


def test_inputs_hash_covers_process_units_in_the_converges_order(tmp_path: Path) -> None:
    import hashlib
    worker = tmp_path / "demo-worker.service"
    s = settings(tmp_path, process_units={"demo-worker": str(worker)})
    Path(s.env_file).write_text('A="1"\n')
    Path(s.unit_file).write_text("[Service]\n")
    worker.write_text("[Service]\nExecStart=/x\n")
    texts = Path(s.env_file).read_text() + Path(s.unit_file).read_text() + worker.read_text() + \
        s.settings_file.read_text()
    assert decisions.inputs_hash(s) == hashlib.sha256(texts.encode()).hexdigest()
    before = decisions.inputs_hash(s)
    worker.write_text("[Service]\nExecStart=/y\n")
    assert decisions.inputs_hash(s) != before


def test_engine_settings_dir_is_the_models() -> None:
    from iac.paths import RELEASE_SETTINGS_DIR
    assert str(SETTINGS_DIR) == RELEASE_SETTINGS_DIR or "IAC_RELEASE_SETTINGS_DIR" in os.environ


def _fake_release(tmp_path: Path, **overrides) -> tuple:
    """A Release whose commands are recorded instead of run (no host): returns it and the log."""
    s = settings(tmp_path, **overrides)
    calls: list[list[str]] = []
    release = Release(s, log=lambda msg: calls.append(["log", msg]))
    return release, calls


def test_release_commands_run_in_order_and_a_failure_restores_the_database(tmp_path: Path, monkeypatch) -> None:
    release, calls = _fake_release(tmp_path, release_commands=[["compress", "--force"], ["ensure_triggers"]])
    ran: list[list[str]] = []
    restored: list[bool] = []
    monkeypatch.setattr(release, "manage",
                        lambda rel, venv, args, *a, **kw: ran.append(args) or args[0] != "ensure_triggers")
    monkeypatch.setattr(release, "restore_databases", lambda: restored.append(True))
    with pytest.raises(codes.ReleaseFailed) as failed:
        release.release_commands(tmp_path, tmp_path)
    assert ran == [["compress", "--force"], ["ensure_triggers"]]
    assert failed.value.code == codes.EXIT_COMMAND and "ensure_triggers" in str(failed.value)
    assert restored == [True]


def test_health_check_wants_the_declared_status(tmp_path: Path, monkeypatch) -> None:
    release, calls = _fake_release(tmp_path, health_status=302, health_url="http://localhost/api/status/")
    asked: list[list[str]] = []

    def fake_run(cmd, check=True, **kw):
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="200", stderr="")
    monkeypatch.setattr(commands, "run", fake_run)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    assert not release.healthy(attempts=2)  # 200 is not the 302 declared
    assert asked[-1][-1] == "http://localhost/api/status/" and "--unix-socket" in asked[-1]
    assert any("answered 200, not 302" in c[1] for c in calls if c[0] == "log")
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: subprocess.CompletedProcess(
        cmd, 0, stdout="302", stderr=""))
    assert release.healthy(attempts=1)


def test_process_units_restart_and_stop_with_gunicorns(tmp_path: Path, monkeypatch) -> None:
    release, _ = _fake_release(tmp_path, process_units={"demo-worker": "/etc/systemd/system/demo-worker.service"})
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    release.restart()
    assert ["systemctl", "restart", "gunicorn-demo", "demo-worker"] in ran


def test_collectstatic_that_fills_nothing_fails_the_build(tmp_path: Path, monkeypatch) -> None:
    """An app whose STATIC_ROOT is not static_dir: the release fails before anything goes live
    (nginx would answer 404 for every static file)."""
    release, _ = _fake_release(tmp_path, static_dir="static-collected", static_root_env="")
    rel = tmp_path / "releases" / ("a" * 40)
    (tmp_path / "venv").mkdir()
    ran: list[list[str]] = []

    def fake_run(cmd, check=True, **kw):
        ran.append(cmd)
        if "mkdir" in cmd:  # the release directory, made as the app user
            Path(cmd[-1]).mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")
    monkeypatch.setattr(commands, "run", fake_run)
    monkeypatch.setattr(release, "virtualenv", lambda r: tmp_path / "venv")
    with pytest.raises(codes.ReleaseFailed) as failed:
        release.build("a" * 40, rel)
    assert failed.value.code == codes.EXIT_STATIC and "static-collected" in str(failed.value)
    collect = next(c for c in ran if "collectstatic" in c)
    assert not any(part.startswith("STATIC_ROOT=") for part in collect)  # the app reads no such variable
    assert not (rel / ".iac-built").exists()


def test_database_is_restored_only_when_migrate_wrote_to_it(tmp_path: Path, monkeypatch) -> None:
    """A later failure (release command, health check) restores the pre-migrate backup only if
    migrate applied something: otherwise the restore would only lose rows written since."""
    assert not decisions.migrate_wrote(0, "Operations to perform:\n  No migrations to apply.\n")
    assert decisions.migrate_wrote(0, "Running migrations:\n  Applying api.0002_check_tags... OK\n")
    assert decisions.migrate_wrote(1, "  No migrations to apply.\n")
    release, calls = _fake_release(tmp_path, pg_databases=["gts_shop"], pg_owners={"gts_shop": "shop"})
    release.backups = [("sqlite", str(tmp_path / "db.sqlite3"), tmp_path / "db.backup"),
                       ("postgresql", "gts_shop", tmp_path / "shop.dump")]
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd))
    release.restore_databases()
    assert ran == [] and any("not restored" in c[1] for c in calls)
    release.schema_changed = True
    release.restore_databases()
    engine = str(commands.BACKUP_ENGINE)
    assert ran == [["python3", engine, "sqlite-restore", str(tmp_path / "db.backup"), str(tmp_path / "db.sqlite3"),
                    "--owner", release.s.user],
                   ["python3", engine, "pg-restore", "gts_shop", str(tmp_path / "shop.dump"), "--role", "shop",
                    "--clean"]]


def test_a_postgres_restore_runs_as_the_databases_owner_never_the_superuser(tmp_path: Path) -> None:
    """The dump's content is the app's: restored in the owner's own session, by the backup engine."""
    s = settings(tmp_path, pg_owners={"gts_shop": "shop_owner"})
    cmd = commands.restore_command("postgresql", "gts_shop", tmp_path / "d.dump", s)
    assert cmd[2:] == ["pg-restore", "gts_shop", str(tmp_path / "d.dump"), "--role", "shop_owner", "--clean"]
    with pytest.raises(codes.ReleaseFailed, match="no owner"):
        commands.restore_command("postgresql", "other_db", tmp_path / "d.dump", s)


# ---- a damaged live release: seen by `verify`, rebuilt beside the damaged one ------------------


def _records(tmp_path: Path):
    return records.Records(tmp_path / "state")


def _damage(release: Path, tmp_path: Path) -> list[str]:
    return manifest.damage(release, _records(tmp_path), os.geteuid())


def _built_release(tmp_path: Path) -> Path:
    """A release as the engine leaves it live: its files, its virtualenv, root's records of both."""
    release = tmp_path / "releases" / ("c" * 40)
    (release / "app/__pycache__").mkdir(parents=True)
    (release / "app/views.py").write_text("VERSION = 'v2'\n")
    (release / "app/__pycache__/views.cpython-311.pyc").write_bytes(b"\0")
    venv = tmp_path / "venvs/.demo-0123"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").touch()
    for dist in ("Django-5.2.19", "gunicorn-23.0.0"):
        (venv / f"lib/python3.11/site-packages/{dist}.dist-info").mkdir(parents=True)
    (release / ".venv").symlink_to(venv)
    records = _records(tmp_path)
    records.set_venv(venv, manifest.venv_packages(venv))
    records.set_built(release.name, {"venv": str(venv), "manifest": manifest.release_manifest(release)})
    return release


def test_manifest_holds_the_release_files_not_bytecode(tmp_path: Path) -> None:
    release = _built_release(tmp_path)
    found = manifest.release_manifest(release)
    assert set(found) == {"app/views.py", ".venv"}
    assert found[".venv"].startswith("-> ") and len(found["app/views.py"]) == 64
    assert _damage(release, tmp_path) == []


def test_records_live_where_only_root_writes(tmp_path: Path) -> None:
    """The engine's records are never in the app's trees: nothing the app can write is trusted."""
    release = _built_release(tmp_path)
    assert not any(p.name.startswith(".iac") for p in release.rglob("*"))
    state = tmp_path / "state"
    assert oct(state.stat().st_mode & 0o777) == "0o700" and state.stat().st_uid == os.geteuid()
    for record in state.rglob("*.json"):
        assert oct(record.stat().st_mode & 0o777) == "0o600"


def test_an_edited_added_or_removed_file_is_damage_named_by_path(tmp_path: Path) -> None:
    release = _built_release(tmp_path)
    (release / "app/views.py").write_text("VERSION = 'hotfix'\n")
    (release / "app/extra.py").write_text("")
    (release / "app/__pycache__/new.cpython-311.pyc").write_bytes(b"\0")  # Python's own: not damage
    assert _damage(release, tmp_path) == ["changed: app/views.py", "added: app/extra.py"]
    (release / "app/views.py").unlink()
    assert "missing: app/views.py" in _damage(release, tmp_path)


def test_a_fifo_or_a_link_in_a_release_is_named_never_opened(tmp_path: Path) -> None:
    """A FIFO would hang a reader (every drift check); a link is recorded as a link, not followed."""
    release = _built_release(tmp_path)
    os.mkfifo(release / "app/pipe")
    (release / "app/passwd").symlink_to("/etc/passwd")
    found = manifest.release_manifest(release)
    assert found["app/pipe"] == "special: fifo" and found["app/passwd"] == "-> /etc/passwd"
    assert _damage(release, tmp_path) == ["added: app/passwd", "added: app/pipe"]


def test_a_package_removed_from_the_virtualenv_is_damage(tmp_path: Path) -> None:
    release = _built_release(tmp_path)
    venv = (release / ".venv").resolve()
    (venv / "lib/python3.11/site-packages/gunicorn-23.0.0.dist-info").rmdir()
    assert _damage(release, tmp_path) == ["virtualenv: gunicorn-23.0.0 missing"]
    import shutil
    shutil.rmtree(venv)
    assert _damage(release, tmp_path)[0].startswith("virtualenv missing")


def test_the_venv_link_in_a_release_is_never_taken_for_its_virtualenv(tmp_path: Path) -> None:
    """The app can point its release's .venv anywhere: damage names the changed link and checks
    the virtualenv root recorded, never the link's target."""
    release = _built_release(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (release / ".venv").unlink()
    (release / ".venv").symlink_to(elsewhere)
    assert _damage(release, tmp_path) == ["changed: .venv"]


def test_many_differences_are_capped_with_a_count() -> None:
    lines = manifest.manifest_differences({f"f{i}": "x" for i in range(15)}, {})
    assert len(lines) == 11 and lines[-1] == "... and 5 more"


def test_damaged_release_is_set_aside_and_put_back_if_the_rebuild_fails(tmp_path: Path, monkeypatch) -> None:
    release = _built_release(tmp_path)
    venv = (release / ".venv").resolve()
    (venv / "lib/python3.11/site-packages/gunicorn-23.0.0.dist-info").rmdir()
    monkeypatch.setattr(commands, "as_user", lambda user, cmd: cmd)
    engine, _ = _fake_release(tmp_path)
    moved = engine.set_aside(release, _damage(release, tmp_path))
    assert moved == {release: release.with_name(release.name + ".damaged"),
                     venv: venv.with_name(venv.name + ".damaged")}
    assert not release.exists() and not venv.exists()
    release.mkdir()  # a half-made rebuild
    monkeypatch.setattr(engine, "restart", lambda: None)
    engine.put_back(moved, release.name, None, None)
    assert (release / "app/views.py").is_file() and (venv / "bin/python").exists()
    assert not release.with_name(release.name + ".damaged").exists()


# ---- one alert per failed release -------------------------------------------------------------


def test_alert_names_host_app_revision_step_and_what_serves() -> None:
    text = decisions.alert_text("srv1", "pinger", "v1", "d" * 40, codes.EXIT_COMMAND,
                                     "release command manage.py compress --no-such FAILED", "e" * 40 + "-0123")
    assert text.startswith("Release FAILED on srv1: pinger v1 (dddddddddddd), step: release command.")
    assert "release eeeeeeeeeeee still serves" in text
    first = decisions.alert_text("srv1", "pinger", "v1", None, codes.EXIT_FETCH, "cannot fetch", None)
    assert "pinger v1, step: fetch" in first and "nothing serves" in first


def test_a_failed_release_sends_exactly_one_alert_through_the_alert_env_file(tmp_path: Path, monkeypatch) -> None:
    """main(): the failure is logged and posted once; the webhook URL (a secret) reaches only the
    notifier's environment, through systemd's EnvironmentFile=, never the command line."""
    alert_env = tmp_path / "backup-alert.env"
    alert_env.write_text('IAC_ALERT_WEBHOOK_URL="https://discord.invalid/api/webhooks/1/t"\n')
    s = settings(tmp_path, alert_env_file=str(alert_env))
    Path(s.env_file).write_text('A="1"\n')
    Path(s.unit_file).write_text("[Service]\n")
    s.releases.mkdir()
    calls: list[tuple[list[str], dict]] = []

    def fake_run(cmd, check=True, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    def failing_run(self):
        self.commit = "f" * 40
        raise codes.ReleaseFailed(codes.EXIT_HEALTH, "health check FAILED")

    monkeypatch.setattr(commands, "run", fake_run)
    load = Settings.load
    monkeypatch.setattr(Settings, "load", lambda app: load(app, tmp_path))
    monkeypatch.setattr(engine.Release, "run", failing_run)
    monkeypatch.setattr(log, "LOG_FILE", tmp_path / "releases.log")
    assert cli.main(["release", "demo"]) == codes.EXIT_HEALTH
    sent = [(cmd, kw) for cmd, kw in calls if cmd[0] == "systemd-run"]
    assert len(sent) == 1
    cmd, kw = sent[0]
    assert f"EnvironmentFile={alert_env}" in cmd and cmd[-2:] == ["notify", "demo"]
    assert "demo v2 (ffffffffffff), step: health check" in kw["input"]
    # the same release failing again (the next run retries it): logged with the count, not re-alerted
    assert cli.main(["release", "demo"]) == codes.EXIT_HEALTH
    assert len([c for c, _ in calls if c[0] == "systemd-run"]) == 1
    failed = json.loads((s.state_dir / "failed.json").read_text())
    assert failed["attempts"] == 2 and failed["step"] == "health check" and failed["commit"] == "f" * 40


def test_failure_record_counts_attempts_of_the_same_release_only() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    first = records.failure_after(None, "a" * 40, "h", "migrate", now)
    assert first["attempts"] == 1 and first["first_at"] == "2026-11-29T12:00:00+00:00"
    again = records.failure_after(first, "a" * 40, "h", "migrate", now.replace(hour=13))
    assert again["attempts"] == 2 and again["first_at"] == first["first_at"]
    assert records.failure_after(again, "b" * 40, "h", "migrate", now)["attempts"] == 1
    assert records.failure_after(again, "a" * 40, "other", "migrate", now)["attempts"] == 1


def test_notify_posts_the_message_to_the_webhook(monkeypatch, capsys) -> None:
    import http.server
    import io
    import threading
    got: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/api/webhooks/1/t")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Release FAILED on h: demo"))
    assert cli.main(["notify", "demo"]) == 0
    server.server_close()
    assert json.loads(got[0]) == {"content": "Release FAILED on h: demo", "allowed_mentions": {"parse": []}}
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/api/webhooks/1/secret-token")
    monkeypatch.setattr(sys, "stdin", io.StringIO("x"))
    assert cli.main(["notify", "demo"]) == 1
    assert "secret-token" not in capsys.readouterr().err


def test_release_without_roots_record_is_rebuilt_once(tmp_path: Path) -> None:
    """A release made before root kept records (its marks were the app's to forge), or whose
    record is gone, is never taken for intact; a virtualenv without a record of its packages
    neither."""
    release = _built_release(tmp_path)
    _records(tmp_path).forget("venvs", ".demo-0123")
    assert _damage(release, tmp_path) == ["virtualenv: no record of its packages"]
    _records(tmp_path).forget("built", release.name)
    assert _damage(release, tmp_path)[0].startswith("no record of the release's files")


def test_a_record_that_cannot_be_read_is_an_error_never_intact(tmp_path: Path, capsys, monkeypatch) -> None:
    release = _built_release(tmp_path)
    (tmp_path / "state/built" / f"{release.name}.json").write_text("{not json")
    s = settings(tmp_path)
    s.app_link.parent.mkdir(parents=True)
    s.app_link.symlink_to(release)
    s.venv_link.parent.mkdir(parents=True, exist_ok=True)
    s.venv_link.symlink_to(tmp_path / "venvs/.demo-0123")
    assert cli.verify_command(s) == 1
    assert "cannot check" in capsys.readouterr().err


# ---- zero downtime: the new release is checked before users reach it -----------------------------


def test_candidate_runs_the_new_release_as_the_app_on_a_socket_of_its_own(tmp_path: Path) -> None:
    s = settings(tmp_path, wsgi_app="hc.wsgi:application", gunicorn_config="/usr/local/lib/iac/gunicorn_conf.py",
                 manage_dir="src", timeout=90)
    cmd = commands.candidate_command(s, "iac-candidate-demo", "/run/iac-candidate-demo/gunicorn.sock",
                                           tmp_path / "rel", tmp_path / "venv")
    assert cmd[:2] == ["systemd-run", "--quiet"] and f"--uid={s.user}" in cmd
    assert f"EnvironmentFile={s.env_file}" in cmd and f"WorkingDirectory={tmp_path / 'rel/src'}" in cmd
    tail = cmd[cmd.index("--") + 1:]
    assert tail[:2] == [f"{tmp_path}/venv/bin/gunicorn", "hc.wsgi:application"]
    assert "unix:/run/iac-candidate-demo/gunicorn.sock" in tail and tail[tail.index("--timeout") + 1] == "90"
    assert tail[tail.index("--config") + 1] == "/usr/local/lib/iac/gunicorn_conf.py"


def test_release_that_fails_as_a_candidate_is_never_switched_to(tmp_path: Path, monkeypatch) -> None:
    """importfail's case: the links, the units and what serves stay as they were; a first release
    leaves every unit (the socket too) stopped and disabled."""
    release, calls = _fake_release(tmp_path, wsgi_app="demo.wsgi:application", socket_unit="gunicorn-demo.socket")
    rel = tmp_path / "releases" / ("a" * 40)
    rel.mkdir(parents=True)
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    monkeypatch.setattr(release, "candidate_healthy", lambda r, v: False)
    switched: list[Path] = []
    monkeypatch.setattr(release, "switch_to", lambda r, v: switched.append(r))
    venv = tmp_path / "venvs/.demo-1"
    with pytest.raises(codes.ReleaseFailed) as failed:
        release.go_live("a" * 40, rel, venv, previous=(tmp_path / "releases/old", venv))
    assert failed.value.code == codes.EXIT_HEALTH and "before the switch" in str(failed.value)
    assert switched == [] and not any("restart" in c for c in ran)
    with pytest.raises(codes.ReleaseFailed):
        release.go_live("a" * 40, rel, venv, previous=None)
    assert ["systemctl", "disable", "--now", "--quiet", "gunicorn-demo.socket", "gunicorn-demo"] in ran
    assert any("first release failed" in c[1] for c in calls if c[0] == "log")


def test_restart_keeps_the_socket_and_restarts_the_services(tmp_path: Path, monkeypatch) -> None:
    release, _ = _fake_release(tmp_path, socket_unit="gunicorn-demo.socket")
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    release.restart()
    assert ["systemctl", "start", "gunicorn-demo.socket"] in ran
    assert ["systemctl", "restart", "gunicorn-demo"] in ran and not any(
        c[:2] == ["systemctl", "restart"] and "gunicorn-demo.socket" in c for c in ran)


# ---- rollback decisions ------------------------------------------------------------------------

SHOWMIGRATIONS = """[X]  contenttypes.0001_initial
[X]  core.0001_initial
[X]  core.0002_v2_change
[ ]  core.0003_later
"""


def test_showmigrations_plan_is_read_in_order_with_what_is_applied() -> None:
    assert decisions.showmigrations_plan(SHOWMIGRATIONS) == [
        ("contenttypes.0001_initial", True), ("core.0001_initial", True), ("core.0002_v2_change", True),
        ("core.0003_later", False)]


def test_reversal_goes_back_to_the_last_migration_the_older_code_knows() -> None:
    applied = ["contenttypes.0001_initial", "core.0001_initial", "core.0002_v2_change", "extra.0001_initial"]
    known = ["contenttypes.0001_initial", "core.0001_initial"]
    assert decisions.reversal_targets(applied, known) == {"core": "0001_initial", "extra": "zero"}
    assert decisions.reversal_targets(known, known) == {}


def test_irreversible_migrations_are_named_from_djangos_plan() -> None:
    plan = """Planned operations:
core.0004_data
    Raw Python operation -> IRREVERSIBLE
core.0003_field
    Undo Add field tags to check
"""
    assert decisions.irreversible_migrations(plan) == ["core.0004_data"]
    assert decisions.irreversible_migrations("Planned operations:\n  No planned migration operations.\n") == []


def test_rollback_target_is_the_release_live_before_or_the_one_asked_for() -> None:
    a, b, c = ("a" * 40 + "-k", "b" * 40 + "-k", "c" * 40 + "-k")
    history = [{"release": a}, {"release": b}]
    assert decisions.rollback_target(history, [a, b, c], c, None) == b
    assert decisions.rollback_target(history, [a, c], c, None) == a  # b was pruned
    assert decisions.rollback_target(history, [a, b, c], c, "aaaa") == a
    with pytest.raises(codes.ReleaseFailed, match="no kept release matches 'ffff'"):
        decisions.rollback_target(history, [a, b, c], c, "ffff")
    with pytest.raises(codes.ReleaseFailed, match="no release that was live before"):
        decisions.rollback_target([], [c], c, None)


def test_virtualenvs_go_with_the_last_release_that_uses_them(tmp_path: Path) -> None:
    a, b, c = (tmp_path / ".demo-aaaa", tmp_path / ".demo-bbbb", tmp_path / ".demo-cccc")
    damaged = tmp_path / ".demo-dddd.damaged"
    assert decisions.venvs_to_prune([a, b, c, damaged], [a, a, c]) == [b]


def test_health_check_stops_waiting_once_the_app_keeps_saying_no() -> None:
    assert decisions.health_verdict(["000"] * 10) is None  # still starting
    assert decisions.health_verdict(["000", "500", "500", "500", "500"]) is None
    assert decisions.health_verdict(["000", "500", "500", "500", "500", "500"]) is False
    assert decisions.health_verdict(["500", "404", "500", "500", "500"]) is None


def test_after_the_switch_health_is_checked_through_nginx_with_the_users_host(tmp_path: Path) -> None:
    s = settings(tmp_path, health_url="http://localhost/health/", health_socket="/run/demo/gunicorn.sock",
                 health_headers=["Host:pravoo.in", "X-Forwarded-Proto:https"],
                 nginx_health_url="https://pravoo.in/health/", nginx_resolve="pravoo.in:443:127.0.0.1")
    through_nginx = commands.health_command(s, via_nginx=True)
    # nginx answers for the users' name on its own port; no socket, no forged proxy headers
    assert through_nginx[-3:] == ["--resolve", "pravoo.in:443:127.0.0.1", "https://pravoo.in/health/"]
    assert "--unix-socket" not in through_nginx and "-H" not in through_nginx
    on_socket = commands.health_command(s)
    assert on_socket[-1] == "http://localhost/health/"
    assert on_socket[on_socket.index("--unix-socket"):][:2] == ["--unix-socket", "/run/demo/gunicorn.sock"]
    assert "Host:pravoo.in" in on_socket and "X-Forwarded-Proto:https" in on_socket
    candidate = commands.health_command(s, socket="/run/iac-candidate-demo/gunicorn.sock")
    assert "/run/iac-candidate-demo/gunicorn.sock" in candidate


def test_the_switch_is_checked_through_nginx_only_once_the_site_is_this_repos(tmp_path: Path) -> None:
    """A new host's first release comes before its site; an adopted host's old site (same name)
    proxies to the old process until the sites step replaces it: both are checked on the socket."""
    site = tmp_path / "django"
    assert not decisions.site_proxies_to(str(site), "/run/broker_portal/gunicorn.sock")  # no site yet
    site.write_text("server { location / { proxy_pass http://127.0.0.1:8001; } }\n")  # the runbook's
    assert not decisions.site_proxies_to(str(site), "/run/broker_portal/gunicorn.sock")
    site.write_text("upstream app {\n    server unix:/run/broker_portal/gunicorn.sock fail_timeout=0;\n}\n")
    assert decisions.site_proxies_to(str(site), "/run/broker_portal/gunicorn.sock")


def test_an_alert_before_the_alert_settings_exist_says_so_instead_of_failing_silently(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """A host's first run releases its apps before it writes backups.alerts' env file."""
    release, calls = _fake_release(tmp_path, alert_env_file=str(tmp_path / "not-yet.env"))
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, **kw: ran.append(cmd))
    cli.alert(release, codes.EXIT_HEALTH, "health check FAILED")
    assert ran == []
    assert any("not written yet" in c[1] for c in calls if c[0] == "log"), calls


# ---- root places files in an app's directory without writing through what the app put there ------


def test_a_linked_directory_is_refused_for_reading(tmp_path: Path) -> None:
    """A release directory swapped for a link is never entered to read its requirements."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "requirements.txt").write_text("x")
    (tmp_path / "app").symlink_to(real)
    with pytest.raises(OSError):
        safefs.read_app_file(tmp_path / "app", "requirements.txt")


def test_pruning_and_set_aside_touch_only_the_apps_own_directories(tmp_path: Path) -> None:
    """A link where a release or virtualenv was, or someone else's directory, is never removed."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("keep")
    link = tmp_path / "releases" / ("d" * 40)
    link.parent.mkdir()
    link.symlink_to(victim)
    assert safefs.remove_owned_tree(link, os.geteuid()) is False
    assert safefs.remove_owned_tree(victim, os.geteuid() + 1) is False
    assert (victim / "file").read_text() == "keep"
