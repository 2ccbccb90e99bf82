"""`iac-backup rekey` (backup_engine/rekey.py) on a real restic repository in a directory: the
new password is added beside the old, the env file switches to it (its other lines as they were),
every snapshot still restores with it, and once finished the old password opens nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from backup_engine import lock, offsite, rekey
from backup_engine.proc import BackupError
from engine_common.envfile import parse_env_file, quote_env_value

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is installed by install-deps.sh")
OLD, NEW = "old-passphrase-$(id)`x`", "new-passphrase-0123456789\"'"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the env file, a directory backed up twice), the repository initialised with OLD."""
    monkeypatch.setattr(offsite, "MARKERS", tmp_path / "markers")
    monkeypatch.setattr(rekey, "MARKERS", tmp_path / "markers")
    monkeypatch.setattr(rekey, "LOCK_DIR", tmp_path / "run")
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path / "run")
    env_file = tmp_path / "restic.env"
    env_file.write_text("# Managed by this repo\n"
                        f"RESTIC_REPOSITORY={quote_env_value(str(tmp_path / 'repo'))}\n"
                        f"RESTIC_PASSWORD={quote_env_value(OLD)}\n"
                        f"RESTIC_CACHE_DIR={quote_env_value(str(tmp_path / 'cache'))}\n")
    env_file.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, **parse_env_file(env_file.read_text())}
    subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
    for text in ("first", "second"):
        (data / "file.txt").write_text(text)
        subprocess.run(["restic", "backup", "-q", str(data)], env=env, check=True, capture_output=True)
    return env_file, data


def restic_with(env_file: Path, password: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **parse_env_file(env_file.read_text()), "RESTIC_PASSWORD": password}
    return subprocess.run(["restic", *args], env=env, capture_output=True, text=True, check=False)


def test_a_rotation_keeps_every_snapshot_and_retires_the_old_password(repo, tmp_path: Path) -> None:
    env_file, data = repo
    before = env_file.read_text()
    added = rekey.add(str(env_file), NEW)
    assert added["old_key"] != added["new_key"]
    # the env file: only RESTIC_PASSWORD changed, quoted as the controller writes it; still 0600
    assert parse_env_file(env_file.read_text()) == {**parse_env_file(before), "RESTIC_PASSWORD": NEW}
    assert env_file.read_text() == before.replace(quote_env_value(OLD), quote_env_value(NEW))
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert offsite.repo_known(str(env_file)) == "exists"  # no re-check of the repository next run
    # between the stages both passwords open it (a failure here loses nothing)
    assert restic_with(env_file, OLD, "cat", "config").returncode == 0
    assert rekey.add(str(env_file), NEW) == added  # run again: nothing more is added
    finished = rekey.finish(str(env_file))
    assert finished == {"removed": added["old_key"], "keys": 1}
    assert "wrong password" in restic_with(env_file, OLD, "cat", "config").stderr
    snapshots = json.loads(restic_with(env_file, NEW, "snapshots", "--json").stdout)
    assert len(snapshots) == 2
    for snap, text in zip(sorted(snapshots, key=lambda s: s["time"]), ("first", "second"), strict=True):
        target = tmp_path / f"restored-{snap['short_id']}"
        assert restic_with(env_file, NEW, "restore", snap["id"], "--target", str(target)).returncode == 0
        assert (target / str(data).lstrip("/") / "file.txt").read_text() == text
    assert rekey.finish(str(env_file)) == {"removed": None}
    assert not list((tmp_path / "run").iterdir())  # the password file is gone
    assert not list((tmp_path / "markers").glob("*.env"))  # and the copy that held the old password


@pytest.mark.parametrize("bad", ["", "short", "two\nlines-of-password"])
def test_a_new_password_that_is_short_or_two_lines_is_refused(tmp_path: Path, bad: str) -> None:
    env_file = tmp_path / "restic.env"
    env_file.write_text(f"RESTIC_REPOSITORY=/nonexistent\nRESTIC_PASSWORD={quote_env_value(OLD)}\n")
    before = env_file.read_text()
    with pytest.raises(BackupError, match="one line of at least 12 characters"):
        rekey.add(str(env_file), bad)
    assert env_file.read_text() == before


def test_finish_before_add_removes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rekey, "MARKERS", tmp_path / "markers")
    env_file = tmp_path / "restic.env"
    env_file.write_text(f"RESTIC_REPOSITORY=/nonexistent\nRESTIC_PASSWORD={quote_env_value(OLD)}\n")
    assert rekey.finish(str(env_file)) == {"removed": None}  # no record of an added key: restic not asked


def test_an_unfinished_rotation_is_reverted_to_the_old_password_alone(repo) -> None:
    env_file, _ = repo
    before = env_file.read_text()
    added = rekey.add(str(env_file), NEW)
    assert rekey.revert(str(env_file)) == {"reverted": added["new_key"]}
    assert env_file.read_text() == before and env_file.stat().st_mode & 0o777 == 0o600
    assert "wrong password" in restic_with(env_file, NEW, "cat", "config").stderr
    assert restic_with(env_file, OLD, "cat", "config").returncode == 0
    assert rekey.finish(str(env_file)) == {"removed": None} and rekey.revert(str(env_file)) == {"reverted": None}
