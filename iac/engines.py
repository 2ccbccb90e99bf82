"""The host engines as the controller sees them: their contracts and their shared client code.

The engines live in files/usr/local/lib/iac/ (mirroring where they run: ``release_engine/``,
``backup_engine/``, the shared ``engine_common/``, each run through a launcher beside them). The
controller builds each engine's typed settings from the model with the engine's own settings
class (one contract, shared by the operation, the engine and their unit tests) and posts its
alerts with the engines' one alert client. It never imports an engine's stages: only
``*.settings`` and ``engine_common`` (tests/unit/test_layout.py holds it to that).
"""

from __future__ import annotations

import sys

from iac.paths import HOST
from iac.repo import FILES

ENGINE_DIR = FILES / "usr/local/lib/iac"
if str(ENGINE_DIR) not in sys.path:
    sys.path.append(str(ENGINE_DIR))

from backup_engine.settings import BackupSettings  # noqa: E402
from baseline_engine.settings import BaselineSettings  # noqa: E402
from engine_common import alerts, contract, envfile  # noqa: E402
from release_engine.settings import Settings as ReleaseSettings  # noqa: E402
from watch_engine.settings import WatchSettings  # noqa: E402

__all__ = ["ENGINE_DIR", "BackupSettings", "BaselineSettings", "ReleaseSettings", "WatchSettings", "alerts", "contract",
           "envfile"]

HOST_DIR = HOST.engines
LAUNCHERS = ("iac_release.py", "iac_backup.py", "iac_baseline.py", "iac_watch.py")


def engine_files() -> dict[str, str]:
    """Every file of the host engines (the packages and their launchers) -> its contents, by its
    path on the host (what a converge ships; bytecode caches are the host's own)."""
    out = {}
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts or path.name == "gunicorn_conf.py":
            continue
        out[f"{HOST_DIR}/{path.relative_to(ENGINE_DIR)}"] = path.read_text()
    return out


def host_engines() -> None:
    """The host engines on every host: the release, backup, baseline and watch engines and what they share, in one
    operation (one command compares every file; only what differs is uploaded)."""
    from iac.guarded import files_present  # pyinfra's operations, only where a deploy runs

    files_present(name=f"Host engines in {HOST_DIR} (release, backup, baseline, watch, shared)", files=engine_files(),
                  executable=tuple(f"{HOST_DIR}/{name}" for name in LAUNCHERS))
