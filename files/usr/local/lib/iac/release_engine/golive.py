"""Stage 4: the candidate checked on its own socket, the switch, the restart, the check through nginx."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine_common.safefs import owned_dir

from . import commands
from .codes import EXIT_HEALTH, ReleaseFailed
from .commands import candidate_command, health_command
from .decisions import health_verdict, short, site_proxies_to
from .log import Log
from .manifest import release_manifest
from .records import Records
from .settings import Settings


class GoingLive:
    """Stage 4: the candidate checked on its own socket, the switch, the restart, the check through nginx."""

    s: Settings
    log: Log
    records: Records

    # 4. switch + restart + health
    def switch_to(self, release: Path, venv: Path) -> None:
        """The stable links (root's, in root's directories) to ``release`` and the virtualenv root
        recorded for it (never where the release's own .venv link points)."""
        s = self.s
        for link, target in ((s.app_link, release), (s.venv_link, venv)):
            tmp = Path(f"{link}.new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)


    @property
    def units(self) -> list[str]:
        """gunicorn's unit, then the app's process units (restarted, enabled, stopped together)."""
        return [self.s.unit, *self.s.process_units]


    @property
    def all_units(self) -> list[str]:
        """The units enabled with the app (and disabled with a failed first release): the socket too."""
        return [*([self.s.socket_unit] if self.s.socket_unit else []), *self.units]


    def restart(self) -> None:
        # a unit that hit its start limit (StartLimitBurst) refuses even a manual start until reset
        commands.run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
        # the socket is not restarted: it keeps the connections that arrive meanwhile
        if self.s.socket_unit:
            commands.run(["systemctl", "start", self.s.socket_unit], check=False)
        commands.run(["systemctl", "restart", *self.units], check=False)


    def candidate_healthy(self, release: Path, venv: Path) -> bool:
        """The new release under gunicorn on a socket of its own, before anything switches:
        users are never sent to a release that cannot answer its health check."""
        s = self.s
        unit, sock = s.candidate_unit, s.candidate_socket
        commands.run(["systemctl", "stop", unit], check=False, stderr=subprocess.DEVNULL)  # a leftover
        commands.run(["systemctl", "reset-failed", unit], check=False, stderr=subprocess.DEVNULL)
        started = commands.run(candidate_command(s, unit, sock, release, venv), check=False)
        try:
            ok = started.returncode == 0 and self.healthy(socket=sock, attempts=20)
            if not ok:
                commands.run(["journalctl", "-u", unit, "-n", "30", "--no-pager", "-o", "cat"], check=False,
                             stdout=sys.stderr)
        finally:
            commands.run(["systemctl", "stop", unit], check=False, stderr=subprocess.DEVNULL)
        return ok


    def healthy(self, attempts: int = 30, socket: str | None = None, via_nginx: bool = False) -> bool:
        s = self.s
        cmd = health_command(s, socket, via_nginx)
        answers: list[str] = []
        for _ in range(attempts):
            got = commands.run(cmd, check=False, capture_output=True, text=True).stdout.strip()
            if got == str(s.health_status):
                return True
            answers.append(got)
            if health_verdict(answers) is False:
                break
            time.sleep(1)
        self.log(f"{cmd[-1]}{' through nginx' if via_nginx else ''} answered "
                 f"{answers[-1] if answers and answers[-1] != '000' else 'nothing'}, not {s.health_status}")
        return False


    def go_live(self, commit: str, release: Path, venv: Path, previous: tuple[Path, Path] | None,
                rollback: bool = False) -> None:
        """Check the release on its own socket, switch, restart, check through nginx; if that
        fails, back to ``previous`` (its release and virtualenv)."""
        s = self.s
        # what `verify` compares the live release with, in root's records: taken now, after the
        # release commands (which may write into it); a release rolled back to keeps the one it
        # went live with before (what changed in it since is damage, not the new truth)
        built = self.records.built(release.name) or {}
        if not rollback or built.get("manifest") is None:
            self.records.set_built(release.name, {"venv": str(venv), "commit": commit,
                                                  "manifest": release_manifest(release)})
        if s.wsgi_app and not self.candidate_healthy(release, venv):
            self.log(f"health check FAILED for {short(commit)} at {s.health_url}, before the switch: users "
                     "never reached it")
            self.restore_databases()
            if previous is None:
                self.log(f"first release failed: nothing is live; {' '.join(self.all_units)} stay stopped and "
                         "disabled; fix the revision and run again")
                commands.run(["systemctl", "disable", "--now", "--quiet", *self.all_units], check=False)
                commands.run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
            raise ReleaseFailed(EXIT_HEALTH, "health check FAILED before the switch; the live release is untouched")
        self.switch_to(release, venv)
        os.utime(release, follow_symlinks=False)  # releases are pruned oldest-live first
        commands.run(["systemctl", "daemon-reload"])
        commands.run(["systemctl", "enable", "--quiet", *self.all_units])
        self.restart()
        # through nginx with the users' Host once the site is ours (a first release on a new host
        # comes before its site, and on an adopted host the old site still proxies to the old
        # process until the sites step replaces it: then on gunicorn's socket, as the candidate was)
        via_nginx = site_proxies_to(s.nginx_site, s.health_socket) and bool(s.nginx_health_url)
        if self.healthy(via_nginx=via_nginx):
            self.log(f"{s.nginx_health_url + ' through nginx' if via_nginx else s.health_url} answers "
                     f"{s.health_status}")
            return
        self.log(f"health check FAILED for {short(commit)} at "
                 f"{s.nginx_health_url + ' through nginx' if via_nginx else s.health_url}")
        commands.run(["journalctl", "-u", s.unit, "-n", "30", "--no-pager"], check=False, stdout=sys.stderr)
        if previous is not None and owned_dir(previous[0], s.uid):
            self.log(f"rolling back to {short(previous[0].name)}")
            self.restore_databases()
            self.switch_to(*previous)
            self.restart()
        else:
            # a first release has nothing to go back to: the unit is stopped and disabled (not left
            # restarting every RestartSec), the stable links are removed, the database restored
            self.log(f"first release failed: {' '.join(self.all_units)} stopped and disabled, {s.app_link} removed; "
                     "fix the revision and run again")
            commands.run(["systemctl", "disable", "--now", "--quiet", *self.all_units], check=False)
            commands.run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
            s.app_link.unlink(missing_ok=True)
            s.venv_link.unlink(missing_ok=True)
            self.restore_databases()
        raise ReleaseFailed(EXIT_HEALTH, "health check FAILED")
