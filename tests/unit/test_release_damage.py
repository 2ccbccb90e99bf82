"""A damaged live release without a host (release_engine/manifest.py, records.py): root's records
of each release's files and virtualenv, what `verify` names as damage (never following what the
app planted), and a damaged release set aside and rebuilt beside it."""

from __future__ import annotations

import os
from pathlib import Path

from release_engine import cli, commands, manifest, records
from tests.unit.release_demo import fake_release, settings


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
    engine, _ = fake_release(tmp_path)
    moved = engine.set_aside(release, _damage(release, tmp_path))
    assert moved == {release: release.with_name(release.name + ".damaged"),
                     venv: venv.with_name(venv.name + ".damaged")}
    assert not release.exists() and not venv.exists()
    release.mkdir()  # a half-made rebuild
    monkeypatch.setattr(engine, "restart", lambda: None)
    engine.put_back(moved, release.name, None, None)
    assert (release / "app/views.py").is_file() and (venv / "bin/python").exists()
    assert not release.with_name(release.name + ".damaged").exists()


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
