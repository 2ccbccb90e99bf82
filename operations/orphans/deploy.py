"""Orphans: what this repository once managed on a host and no longer declares.

Every whole run ends by recording what it manages (``HostConfig.managed()``) in
``MANAGED_MANIFEST`` on the host. The next run compares: an entry no longer declared (an app
removed from group_data, a renamed site) is an orphan. Units are stopped and disabled, files
(unit files, env files, release settings, nginx sites, logrotate files) and users removed; data
(databases, roles, release, virtualenv, backup, log and home directories, the links to the live
release, so that the app declared again comes back as it was) is never deleted, only reported
as retained with the command that would remove it. Preview and drift show each as
``- delete ...`` or ``retained ...`` under the operation.

The manifest on the host is input like any other: an entry is acted on only if it has the shape
this repository writes (a unit name, a path under the directories apps use, an app's system
user), so an edited manifest cannot make a run delete ``/etc/passwd`` or ``root``.
"""

from __future__ import annotations

import json
import re
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import operation

from iac.ops import files
from iac.paths import HOST, MANAGED_MANIFEST, NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED, RELEASE_SETTINGS_DIR
from operations.app.facts import JsonFile
from operations.host import HostConfig

UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,80}\.(service|socket|timer)$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PROTECTED_USERS = {"root", "postgres", "www-data", "nobody", "daemon", "sshd"}
PATH_RE = re.compile(r"^/[A-Za-z0-9_./@-]+$")


def removable_file_dirs(config: HostConfig) -> tuple[str, ...]:
    """The directories whose files an orphan may be (what apps put there); nothing else is removed."""
    return ("/etc/systemd/system/", f"{NGINX_SITES_AVAILABLE}/", f"{NGINX_SITES_ENABLED}/", "/etc/logrotate.d/",
            f"{config.app_env_dir.rstrip('/')}/", f"{RELEASE_SETTINGS_DIR}/", "/srv/apps/", "/srv/venvs/",
            f"{HOST.tls_links}/")


def refused(entry: object, file_dirs: tuple[str, ...]) -> str | None:
    """Why an entry read from the host's manifest is not acted on, or None when it may be."""
    if not isinstance(entry, dict):
        return "not an entry"
    kind, name = entry.get("kind"), entry.get("name")
    if not isinstance(name, str) or not name:
        return "no name"
    if kind == "unit":
        return None if UNIT_RE.match(name) else "not a unit name"
    if kind == "user":
        return None if USER_RE.match(name) and name not in PROTECTED_USERS else "not an app user"
    if kind == "file":
        ok = PATH_RE.match(name) and ".." not in name.split("/") and name.startswith(file_dirs)
        return None if ok and name.rstrip("/") not in {d.rstrip("/") for d in file_dirs} else "not an app's file"
    if kind in ("directory", "link", "database", "role"):
        return None  # data: only ever reported
    return f"unknown kind {kind!r}"


def describe(entry: dict) -> str:
    app = f" (app {entry['app']})" if entry.get("app") else ""
    if entry.get("keep"):
        return f"retained {entry['kind']} {entry['name']}{app}: data is not deleted; to remove it: {entry['remove']}"
    return f"- delete {entry['kind']} {entry['name']}{app}"


@operation()
def orphans_removed(manifest: str, declared: list[dict], file_dirs: tuple[str, ...]):
    """
    Ensure nothing this repository recorded on the host and no longer declares is left running
    or configured; report the data it leaves (retained, never deleted).

    + manifest: the host's record of what the last whole run managed (``MANAGED_MANIFEST``)
    + declared: what the configuration manages now (``HostConfig.managed()``)
    + file_dirs: the only directories an orphaned file may be removed from

    **Example:**

    .. code:: python

        orphans_removed(name="Orphans removed", manifest="/etc/iac/managed.json",
                        declared=config.managed(), file_dirs=removable_file_dirs(config))
    """
    recorded = host.get_fact(JsonFile, path=manifest)
    entries = recorded.get("entries", []) if isinstance(recorded, dict) else []
    keys = {(e["kind"], e["name"]) for e in declared}
    orphans = []
    for entry in entries:
        why = refused(entry, file_dirs)
        if why:
            host.noop(f"ignored manifest entry {str(entry)[:120]}: {why}")
        elif (entry["kind"], entry["name"]) not in keys:
            orphans.append(entry)
    if not orphans:
        return
    for entry in orphans:
        host.noop(describe(entry))
    gone = [e for e in orphans if not e.get("keep")]
    units = [e["name"] for e in gone if e["kind"] == "unit"]
    paths = [e["name"] for e in gone if e["kind"] == "file"]
    users = [e["name"] for e in gone if e["kind"] == "user"]
    q = shlex.quote
    # stop before removing: a unit whose file is gone cannot be stopped by name cleanly
    for unit in units:
        yield f"systemctl disable --now --quiet {q(unit)} 2>/dev/null || true"
    if paths:
        yield f"rm -f {' '.join(q(p) for p in paths)}"
    if units:
        yield "systemctl daemon-reload"
        yield f"systemctl reset-failed {' '.join(q(u) for u in units)} 2>/dev/null || true"
    if any(p.startswith((f"{NGINX_SITES_AVAILABLE}/", f"{NGINX_SITES_ENABLED}/")) for p in paths):
        # what remains must be valid before nginx reloads (it is: a site was only taken away)
        yield "nginx -t -q && systemctl reload nginx"
    for user in users:
        # the processes of the user were its units, stopped above; its home stays (retained)
        yield f"if id -u {q(user)} >/dev/null 2>&1; then userdel {q(user)}; fi"
    if not gone:
        yield "true"  # only data to report: the manifest written at the end forgets it


def orphans(config: HostConfig) -> None:
    """After the apps (a renamed app's new units are up before the old ones stop), before the
    sites (nginx is reloaded without the removed site, then checked with the declared ones)."""
    orphans_removed(name="Orphans removed (what this repo managed here and no longer declares)",
                    manifest=MANAGED_MANIFEST, declared=config.managed(), file_dirs=removable_file_dirs(config))


def managed_manifest(config: HostConfig) -> None:
    """Last of a whole run: only a run that got this far records what it manages."""
    files.directory(name="Directory /etc/iac", path="/etc/iac", mode="755")
    text = json.dumps({"entries": config.managed()}, indent=1, sort_keys=True) + "\n"
    files.put(name=f"Manifest of what this repo manages here ({MANAGED_MANIFEST})", src=StringIO(text),
              dest=MANAGED_MANIFEST, mode="644")
