"""Stage 1: the declared revision fetched over SSH with the app's deploy key (host key pinned)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine_common.safefs import owned_dir

from . import commands
from .codes import EXIT_FETCH, EXIT_REVISION, ReleaseFailed
from .log import Log
from .records import Records
from .settings import Settings


class Fetching:
    """Stage 1: the declared revision fetched over SSH with the app's deploy key (host key pinned)."""

    s: Settings
    log: Log
    records: Records

    # 1. fetch
    def git(self, *args: str, check: bool = True, capture: bool = False,
            writable: list[str | Path] | None = None) -> subprocess.CompletedProcess:
        """git as the app user, confined: it may write ``writable`` only (the mirror, when fetching);
        its home is visible read-only for the deploy key."""
        cmd = commands.as_app(self.s, ["git", *args], writable or [], home_readable=True,
                     env={"GIT_SSH_COMMAND": self.s.git_ssh_command()})
        return commands.run(cmd, check=check, capture_output=capture, text=True)


    def as_user(self, *cmd: str) -> None:
        """A small fixed file operation inside the app's own trees, done as the app user (root
        never renames, links or removes there by path)."""
        commands.run(commands.as_user(self.s.user, list(cmd)))


    def fetch(self) -> str:
        s = self.s
        if not owned_dir(self.mirror, s.uid):
            tmp = Path(f"{self.mirror}.tmp")
            self.as_user("rm", "-rf", "--", str(tmp), str(self.mirror))
            self.as_user("mkdir", "--", str(tmp))
            if self.git("clone", "--quiet", "--mirror", s.repo_url, str(tmp), check=False,
                        writable=[tmp]).returncode != 0:
                self.as_user("rm", "-rf", "--", str(tmp))
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url} with {s.key_path}: is the deploy key "
                                                "registered? (make deploy-keys)")
            self.as_user("mv", "-T", "--", str(tmp), str(self.mirror))
        else:
            self.git("-C", str(self.mirror), "remote", "set-url", "origin", s.repo_url, writable=[self.mirror])
            if self.git("-C", str(self.mirror), "fetch", "--quiet", "--prune", "--prune-tags", "origin",
                        check=False, writable=[self.mirror]).returncode != 0:
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url}: the live release is untouched")
        out = self.git("-C", str(self.mirror), "rev-parse", "--verify", "--quiet", f"{s.revision}^{{commit}}",
                       check=False, capture=True)
        if out.returncode != 0:
            raise ReleaseFailed(EXIT_REVISION, f"revision '{s.revision}' does not exist in {s.repo_url}")
        return out.stdout.strip()
