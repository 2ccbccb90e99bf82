"""The release engine's stages without a host: settings, decisions (live and unchanged, which
releases and caches to prune, the virtualenv key), fetching from a real git repository, the
record it writes, and how manage.py steps get the app's environment (through systemd, never a
shell). A damaged live release: test_release_damage.py; alerts: test_release_alerts.py; rollback
decisions: test_release_rollback.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine_common import safefs
from release_engine import cli, codes, commands, decisions, engine, records
from release_engine.settings import SETTINGS_DIR, Settings, SettingsError
from tests.unit.release_demo import fake_release, settings

REPO = Path(__file__).resolve().parents[2]
Release = engine.Release


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


def test_release_commands_run_in_order_and_a_failure_restores_the_database(tmp_path: Path, monkeypatch) -> None:
    release, calls = fake_release(tmp_path, release_commands=[["compress", "--force"], ["ensure_triggers"]])
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
    release, calls = fake_release(tmp_path, health_status=302, health_url="http://localhost/api/status/")
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
    release, _ = fake_release(tmp_path, process_units={"demo-worker": "/etc/systemd/system/demo-worker.service"})
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    release.restart()
    assert ["systemctl", "restart", "gunicorn-demo", "demo-worker"] in ran


def test_collectstatic_that_fills_nothing_fails_the_build(tmp_path: Path, monkeypatch) -> None:
    """An app whose STATIC_ROOT is not static_dir: the release fails before anything goes live
    (nginx would answer 404 for every static file)."""
    release, _ = fake_release(tmp_path, static_dir="static-collected", static_root_env="")
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
    release, calls = fake_release(tmp_path, pg_databases=["gts_shop"], pg_owners={"gts_shop": "shop"})
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
    release, calls = fake_release(tmp_path, wsgi_app="demo.wsgi:application", socket_unit="gunicorn-demo.socket")
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
    release, _ = fake_release(tmp_path, socket_unit="gunicorn-demo.socket")
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, check=True, **kw: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, stdout="", stderr=""))
    release.restart()
    assert ["systemctl", "start", "gunicorn-demo.socket"] in ran
    assert ["systemctl", "restart", "gunicorn-demo"] in ran and not any(
        c[:2] == ["systemctl", "restart"] and "gunicorn-demo.socket" in c for c in ran)


# ---- virtualenvs kept; health around the switch -------------------------------------------------


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
