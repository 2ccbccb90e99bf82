"""The release log: one line per step, to stderr and /var/log/iac/releases.log (root 0640)."""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

LOG_FILE = Path(os.environ.get("IAC_RELEASE_LOG", "/var/log/iac/releases.log"))


class Log:
    def __init__(self, app: str, path: Path | None = None) -> None:
        self.app, self.path = app, path or LOG_FILE

    def __call__(self, msg: str) -> None:
        print(f"[iac-app-release {self.app}] {msg}", file=sys.stderr, flush=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # root 0640: steps quote the app's errors (never secrets, but not everyone's business)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
            with os.fdopen(fd, "a") as f:
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o640:
                    os.fchmod(fd, 0o640)
                f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.app}: {msg}\n")
        except OSError:
            pass
