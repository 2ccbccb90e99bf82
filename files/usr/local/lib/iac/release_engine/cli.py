"""Release engine: make an app's declared revision live, or do nothing if it already is.

Managed by this repo (files/usr/local/lib/iac/iac_release.py). Runs on the host as root, with
only the standard library. It reads one settings file written from the model
(``/etc/iac/apps/<app>.release``, JSON; no secrets) and never sources anything with a shell:
manage.py steps run through ``systemd-run`` with the app's ``EnvironmentFile=``, exactly as its
gunicorn unit does.

Commands:
  release APP            make the declared revision live (iac-app-release APP)
  manage APP ARGS...     manage.py ARGS in the live release, as the app, with its env (iac-manage)
  rollback APP [--to COMMIT] [--from-backup]
                         switch to a kept release without rebuilding (the newest one live before
                         the current one, or the one whose commit starts with COMMIT): migrations
                         the older code does not know are reversed first, or the rollback is
                         refused naming the irreversible ones; --from-backup restores instead
                         the database backup taken before the current release migrated (rows
                         written since are lost; a safety backup is taken first)
  notify APP             post the message on stdin to the host's alert webhook (run by the engine
                         through systemd-run with the alert env file: the URL is a secret)
  verify APP             what differs in the live release from what went live: its files against
                         the manifest of hashes recorded then, its virtualenv's packages against
                         those installed when it was built; one line each, nothing when intact
  wheels APP --python X.Y --glibc A.B
                         whether the live release's requirements install on another Python from
                         wheels (an upgrade's check on the old host, release_engine/wheels.py):
                         0 yes, 7 no (the last line names the requirement)

Stages of a release, and why in this order:
  1. fetch    the declared revision over SSH with the app's deploy key (host key pinned)
  2. build    into <releases>/<commit>-<build key> (the build key hashes the settings a build
              depends on, so a settings change never rebuilds a live directory in place): code,
              virtualenv (shared by releases with the same requirements and extra
              requirements), front-end build (npm ci when the package files changed, npm run
              build when its declared inputs changed, else the outputs of the build with the
              same inputs), collectstatic (which must fill static_dir).
              Nothing live changes here: a failure leaves the old release serving.
  3. migrate  back up the database(s) (the backup engine's validated snapshot), migrate, then
              the declared release commands (manage.py compress, ...). A failure restores the
              backup and stops: the old release keeps serving the database as it was.
  4. switch   the stable links (app, venv) to the new release atomically, restart the unit and
              the app's process units, check the health path answers the declared status through
              nginx with the users' Host (on gunicorn's socket while the site does not exist yet).
              If not: switch back, restore the database, restart; a first
              release (nothing to go back to) leaves the units stopped and disabled.
  5. record   what is live in <state_dir>/deployed.json (read by the converge's facts), prune.

Trust: root never follows, opens, renames, removes or chowns a path an app user can create or
replace, and never trusts a record the app can write. The app's user owns its release
directories, virtualenvs, caches, home and state directory (it builds there); root's records of
what was built and what is live, with the manifests `verify` compares against, live in
<state_dir> (AppPaths.state_dir, root 0700), the lock in /run/iac (root 0700). Inside an
app-writable tree root reads only through file descriptors opened without following links
(os.fwalk, O_NOFOLLOW, never a FIFO or device), places files by an exclusive temporary name and a
rename, and removes only directories it checked are the app's (by owner and type, with
shutil.rmtree's descriptor-based walk); everything else there runs as the app user. Builds,
manage.py steps and the candidate gunicorn run as the app under the same systemd sandboxing as its
units (settings "sandboxing"), able to write only the release being built and the app's state.

A live release that `verify` finds damaged (a file edited, a package removed from its
virtualenv) is rebuilt beside the damaged one, which is moved aside until the rebuilt one is
live (and put back if the rebuild fails).

Exit codes: 0 live, 3 cannot fetch, 4 unknown revision, 5 migration (or data import) failed,
6 health check failed, 7 pip failed, 8 front-end build failed, 9 a release command failed,
10 collectstatic did not fill static_dir, 2 usage.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from engine_common import alerts
from engine_common.safefs import UnsafePath

from . import commands
from .codes import STEPS, ReleaseFailed
from .decisions import alert_text
from .engine import Release
from .manifest import damage
from .records import Records
from .settings import Settings
from .wheels import wheels_command

# the file every caller runs (the package is beside it)
LAUNCHER = Path(__file__).resolve().parent.parent / "iac_release.py"


def alert(release: Release, code: int, detail: str) -> None:
    """One message to the host's alert webhook; a failure to send is logged, never raised."""
    s = release.s
    current = release.live()
    live = current[0].name if current else None
    text = alert_text(socket.gethostname(), s.app, s.revision, release.commit, code, detail, live)
    if not s.alert_env_file:
        release.log("no alert webhook configured (backups.alerts): the failure is in this log only")
        return
    if not Path(s.alert_env_file).is_file():
        # a host's first run releases its apps before it writes the alert settings (backups)
        release.log(f"alert NOT sent: {s.alert_env_file} is not written yet (a first run writes it after the "
                    "apps): the failure is in this log only")
        return
    sent = commands.run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                         "-p", f"EnvironmentFile={s.alert_env_file}",
                         "/usr/bin/python3", str(LAUNCHER), "notify", s.app], check=False, input=text,
               text=True, capture_output=True)
    release.log("alert sent" if sent.returncode == 0 else
                f"alert NOT sent (exit {sent.returncode}): {sent.stderr.strip()[-200:] or 'no reason given'}")


def notify_command() -> int:
    url = os.environ.get("IAC_ALERT_WEBHOOK_URL", "")
    if not url:
        print("IAC_ALERT_WEBHOOK_URL is not set", file=sys.stderr)
        return 1
    try:  # the repository's one alert client: retried after a rate limit or a server error
        alerts.post(url, sys.stdin.read(), user_agent="iac-release")
        return 0
    except alerts.AlertFailed as e:  # the URL is a secret: the reason never carries it
        print(f"webhook failed: {e}", file=sys.stderr)
        return 1


def verify_command(s: Settings) -> int:
    """Print what differs in the live release (nothing when it is intact or nothing is live).
    A record that cannot be read is an error (exit 1), never "intact": the drift check then says
    it cannot tell."""
    current = Release(s).live()
    if current is None:
        return 0
    try:
        for line in damage(current[0], Records(s.state_dir), s.uid):
            print(line)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"verify {s.app}: cannot check the live release against root's records: {e}", file=sys.stderr)
        return 1
    return 0


def manage_command(s: Settings, args: list[str]) -> int:
    """manage.py ARGS in the live release, as the app, with its unit's environment and
    confinement; an operator's command may also write the host's /tmp (a report it asks for)."""
    cmd = commands.with_app_env(s, [f"{s.venv_link}/bin/python", "manage.py", *args], s.app_link / s.manage_dir,
                       writable=["/tmp"])
    cmd[cmd.index("--"):cmd.index("--")] = ["-p", "PrivateTmp=no"]
    return commands.run(cmd, check=False).returncode


def failed_step(release: Release, command: str, failed: ReleaseFailed) -> int:
    """Log a failed step; a release that failed before is alerted once, its retries are logged
    with the attempt count (a rollback is run by an operator, who sees its answer)."""
    release.log(f"{failed} (step: {STEPS.get(failed.code)})")
    if command == "release" and release.note_failure(failed.code) == 1:
        alert(release, failed.code, str(failed))
    return failed.code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("release", "manage", "verify", "notify", "rollback", "wheels"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    if args[0] == "notify":
        return notify_command()
    settings = Settings.load(args[1])
    if args[0] == "manage":
        return manage_command(settings, args[2:])
    if args[0] == "verify":
        return verify_command(settings)
    if args[0] == "wheels":
        return wheels_command(settings, args[2:])
    os.umask(0o022)
    release = Release(settings)
    try:
        if args[0] == "rollback":
            extra = args[2:]
            to = extra[extra.index("--to") + 1] if "--to" in extra and extra.index("--to") + 1 < len(extra) else None
            return release.rollback(to, "--from-backup" in extra)
        return release.run()
    except UnsafePath as refused:
        return failed_step(release, args[0], ReleaseFailed(1, str(refused)))
    except ReleaseFailed as failed:
        return failed_step(release, args[0], failed)
    except subprocess.CalledProcessError as failed:
        release.log(f"step failed (exit {failed.returncode}): {' '.join(map(str, failed.cmd))[:300]}; "
                    "the live release is untouched unless a message above says otherwise")
        if args[0] == "release" and release.note_failure(1) == 1:
            alert(release, 1, f"{Path(str(failed.cmd[0])).name} exited {failed.returncode}")
        return 1
