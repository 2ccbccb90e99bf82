"""A demo app's release-engine settings for the release engine's unit tests (test_release_*.py),
every path under the test's own directory; and a Release that records instead of running."""

from __future__ import annotations

import json
import os
from pathlib import Path

from release_engine.engine import Release
from release_engine.settings import Settings


def settings(tmp_path: Path, **overrides) -> Settings:
    """The demo app's settings file written in ``tmp_path`` and loaded as the engine loads it;
    ``overrides`` replace or add keys."""
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


def fake_release(tmp_path: Path, **overrides) -> tuple[Release, list[list[str]]]:
    """A Release whose commands are recorded instead of run (no host): returns it and the log."""
    s = settings(tmp_path, **overrides)
    calls: list[list[str]] = []
    release = Release(s, log=lambda msg: calls.append(["log", msg]))
    return release, calls
