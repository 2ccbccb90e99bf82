"""A Django app under gunicorn and systemd, deployed in releases. One implementation, both hosts.

Stages, and why in this order:
  install   packages (python3-venv, git, sqlite3, node when building a front end)
  identity  system user and group, deploy key (made on the host once, never overwritten),
            the git host's key pinned in known_hosts
  configure env file (secrets, 0640 root:<app>), release settings, the unit (verified), and
            the app's state/log directories
  activate  iac-app-release (the release engine, files/usr/local/lib/iac/iac_release.py):
            fetch, build, back up + migrate, switch, restart, health check. It runs only when
            the revision or an input (env file, unit, release settings) differs from what is
            live, which a fact reads from the host.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from iac.guarded import secret_file, validated_file, validated_files
from iac.ops import files, systemd
from iac.packages import packages_present
from iac.paths import STAGED
from iac.render import render, text_file
from operations.app.context import app_context, env_context
from operations.app.identity import app_files_owned, app_identity
from operations.app.options import DjangoApp
from operations.app.release import _inputs_hash, release_live, release_settings
from operations.host import HostConfig


def _verify_units(binaries: list[str]) -> str:
    # `systemd-analyze verify` also says that ExecStart's binary is not executable, which is
    # true until the first release makes the virtualenv; that line, for these binaries only, is
    # accepted. Every other line (a parse error, a misspelt path) refuses the units.
    accepted = " ".join(f"-e {shlex.quote(f'Command {b} is not executable: No such file or directory')}"
                        for b in binaries)
    return ("out=$(systemd-analyze verify {paths} 2>&1); "
            f"if printf '%s\\n' \"$out\" | grep -vF {accepted} | grep -q .; "
            "then printf '%s\\n' \"$out\"; exit 1; fi")


def django_app(config: HostConfig, name: str, app: DjangoApp) -> None:
    """Declare one app, from packages to a live release (see module docstring for stages)."""
    ctx = app_context(config, name, app)

    # ---- install
    # (Node.js for front-end builds comes from operations/node/deploy.py, before the apps)
    pkgs = ["python3-venv", "git", "curl", "sqlite3", "util-linux"] + (["logrotate"] if app.log_dir else [])
    packages_present(pkgs, config.base.apt_cache_hours, f"app {name}")

    # ---- identity
    app_identity(config, name, app)

    # ---- configure
    files.directory(name="Directory for app env files", path=config.app_env_dir, user="root",
                    group="root", mode="755")
    env_text = render("etc/iac/apps/app.env.j2", **env_context(config, name, app))
    secret_file(name=f"{name}: env file (secrets)", dest=ctx["env_file"], content=env_text,
                user="root", group=app.user, mode="640", env=True)
    paths = ctx["paths"]
    release_text = json.dumps(release_settings(config, name, app, ctx).to_dict(), indent=2) + "\n"
    files.directory(name="Directory for release settings", path=str(Path(paths.release_settings).parent),
                    mode="755")
    files.put(name=f"{name}: release settings", src=text_file(release_text),
              dest=paths.release_settings, mode="644")

    files.directory(name="Staging directory for units", path=f"{STAGED}/etc/systemd/system", mode="755")
    # the socket first: the service requires it, and its check by systemd looks the socket up
    socket_text = render("etc/systemd/system/gunicorn.socket.j2", **ctx)
    service_text = render("etc/systemd/system/gunicorn.service.j2", **ctx)
    units = [(paths.socket_unit, paths.socket_unit_file, socket_text), (app.unit, paths.unit_file, service_text)]
    # the release engine hashes the same texts in the same order (iac_release.py inputs_hash)
    unit_texts = [service_text, socket_text]
    for proc, unit in paths.process_units.items():
        text = render("etc/systemd/system/app-process.service.j2", process=proc, process_unit=unit,
                      command=app.processes[proc].command, **ctx)
        unit_texts.append(text)
        units.append((unit, paths.process_unit_files[unit], text))
    # Checked together by systemd (the service requires the socket, the socket activates the
    # service), so a set that does not load together never goes live. daemon-reload only: the
    # release step below restarts the units (they are among its inputs) after the new release is
    # built, so a changed unit costs one restart, which the socket makes invisible to users.
    others = [u for u, _, _ in units if u != app.unit]
    validated_files(
        name=f"{name}: unit {app.unit} (verified, live) with {', '.join(others)}",
        files={path: text for _, path, text in units},
        validate=_verify_units([paths.gunicorn, f"{paths.venv_link}/bin/python"]),
        activate="systemctl daemon-reload", staging=f"{STAGED}/app-units-{name}",
    )
    for d in ("/srv/apps", "/srv/venvs", "/srv/releases"):
        files.directory(name=f"Directory {d}", path=d, mode="755")
    if app.database.engine == "sqlite":
        files.directory(name=f"{name}: SQLite directory", path=str(Path(app.database.path).parent),
                        user=app.user, group=app.user, mode="750")
        app_files_owned(name=f"{name}: the SQLite directory's files are its own",
                        user=app.user, path=str(Path(app.database.path).parent))
    if app.log_dir:
        files.directory(name=f"{name}: log directory", path=app.log_dir, user=app.user,
                        group=app.user, mode="750")
        app_files_owned(name=f"{name}: the log directory's files are its own", user=app.user, path=app.log_dir)
        rotate = paths.logrotate
        files.directory(name="Staging directory for logrotate", path=f"{STAGED}/etc/logrotate.d", mode="755")
        files.put(name=f"{name}: log rotation (staged)", src=text_file(render("etc/logrotate.d/gts-app.j2", **ctx)),
                  dest=f"{STAGED}{rotate}", mode="644")
        validated_file(name=f"{name}: log rotation (checked with logrotate -d, live)", staged=f"{STAGED}{rotate}",
                       dest=rotate, validate="logrotate -d {path}", activate="true")

    # ---- activate
    release_live(
        name=f"{name}: release {app.source.revision} live", app=name, revision=app.source.revision,
        repo_url=app.source.url, user=app.user, key=paths.deploy_key, known_hosts=paths.known_hosts,
        inputs=_inputs_hash(env_text, *unit_texts, release_text), deployed=paths.deployed,
    )
    for unit in (paths.socket_unit, app.unit, *paths.process_units.values()):
        systemd.service(name=f"{name}: {unit} running and enabled", service=unit, running=True, enabled=True)
