"""Everything one host declares: the sections of every concern (their options live beside their
deploys, in operations/<concern>/options.py), the checks across them, and what is derived from
the whole (the apps' paths, the open ports, what the repository manages on the host).

Secrets are ``SecretStr`` fields: they print as ``**********``, are never taken from
``group_data/`` and reach a run only through the secrets source (``stack.secrets``)."""

from __future__ import annotations

import posixpath
import shlex
from typing import Annotated, Any

from pydantic import (
    Field,
    model_validator,
)

from iac.debian import DebianRelease, release
from iac.paths import HOST, NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED
from iac.values import Ident, Strict, Username, option_error, path_under
from operations.admin.options import AdminSection
from operations.app.options import DjangoApp, PostgresDatabase, SqliteDatabase
from operations.app.paths import AppPaths, app_paths
from operations.backups.options import BackupsSection
from operations.base.options import BaseSection, HostSection
from operations.baseline.options import BaselineSection
from operations.exposure.options import FirewallSection, SshSection, UpdatesSection
from operations.network.options import NetworkSection
from operations.node.options import NodeSection
from operations.postgres.options import PostgresSection
from operations.tailscale.options import TailscaleSection
from operations.tls.options import TlsSection
from operations.watch.options import WatchSection

# names other parts of the host already use
RESERVED_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "_apt", "nobody", "postgres", "sshd", "messagebus", "systemd-network",
    "systemd-resolve", "systemd-timesync", "tss", "nginx", "git",
})


RESERVED_UNITS = frozenset({
    "nginx", "postgresql", "ssh", "sshd", "cron", "dbus", "networking", "nftables", "tailscaled", "certbot",
    "unattended-upgrades", "apt-daily", "apt-daily-upgrade", "logrotate", "getty@", "iac-backup-alert@",
})


# Debian's default site (removed), and the site that answers names no app serves where several
# TLS sites share a port (nginx_sites: UNKNOWN_NAMES_SITE)
UNKNOWN_NAMES_SITE = "iac-unknown-names"
RESERVED_SITES = frozenset({"default", UNKNOWN_NAMES_SITE})


class HostConfig(Strict):
    """Everything one host declares. Sections are added as services are declared."""

    host: HostSection = Field(description="Identity of the host.")
    base: BaseSection = Field(default=BaseSection(), description="Base system.")
    admin: AdminSection = Field(description="The administrator's account.")
    apps: dict[Ident, DjangoApp] = Field(default={}, description="Django apps on this host, by name.",
                                         examples=[{}])
    tls: TlsSection | None = Field(default=None, description="certbot settings, for sites with tls.",
                                   examples=[None])
    postgres: PostgresSection | None = Field(default=None, description="Local PostgreSQL server.",
                                             examples=[None])
    app_env_dir: Annotated[str, path_under("/etc", example="/etc/gts/apps")] = Field(
        default="/etc/iac/apps", description="Directory of the apps' env files (under /etc).",
        examples=["/etc/gts/apps"])
    apps_group: Username | None = Field(
        default=None,
        description=(
            "A group every app user belongs to (the runbook's gtsapps). It grants nothing by itself: "
            "env files are readable by their own app's group only."
        ),
        examples=["gtsapps"],
    )
    node: NodeSection = Field(default=NodeSection(), description="Node.js for front-end builds.")
    network: NetworkSection | None = Field(default=None, description="Static network configuration "
                                           "(None: left as the provider set it up).", examples=[None])
    tailscale: TailscaleSection | None = Field(default=None, description="Tailscale (None: not managed).",
                                               examples=[None])
    backups: BackupsSection | None = Field(default=None, description="Backups of the host's data "
                                           "(None: none are made).", examples=[None])
    watch: WatchSection = Field(default=WatchSection(), description="What the host's watch alerts about "
                                "(certificates, disks, stale backups), through backups.alerts.")
    ssh: SshSection = Field(default=SshSection(), description="sshd.")
    firewall: FirewallSection = Field(default=FirewallSection(), description="Packet filter (nftables).")
    updates: UpdatesSection = Field(default=UpdatesSection(), description="Automatic security updates.")
    baseline: BaselineSection = Field(default=BaselineSection(), description="The whole host against Debian's "
                                      "packages and this declaration: local additions and TLS expiry.")

    def debian(self) -> DebianRelease:
        """The Debian release the host is declared on, with what derives from it (iac/debian.py)."""
        return release(self.host.debian)

    def app_paths(self, name: str) -> AppPaths:
        """The paths of app ``name`` (see AppPaths; derived in operations/app/paths.py)."""
        return app_paths(name, self.apps[name], self.app_env_dir)

    def managed(self) -> list[dict[str, str | bool]]:
        """What the repository manages on this host, as recorded there (MANAGED_MANIFEST) by each
        whole run: an entry a later configuration no longer declares is an orphan. Units, files
        and users (``keep`` False) are removed by the next run; data (``keep`` True: databases,
        roles, release, virtualenv, backup, log and home directories, the links to the live
        release) is never deleted by a run,
        only reported as retained with ``remove``, the command an operator may run by hand.

        Example entry: ``{"kind": "unit", "name": "gunicorn-shop_scheduler.service",
        "app": "shop_scheduler", "keep": False, "remove": ""}``."""
        out: list[dict[str, str | bool]] = []

        def add(kind: str, name: str, app: str = "", remove: str = "") -> None:
            out.append({"kind": kind, "name": name, "app": app, "keep": bool(remove), "remove": remove})

        for name, app in self.apps.items():
            p = self.app_paths(name)
            for unit in (p.socket_unit, f"{app.unit}.service", *(f"{u}.service" for u in p.process_units.values())):
                add("unit", unit, name)
            for path in (p.socket_unit_file, p.unit_file, *p.process_unit_files.values(), p.env_file,
                         p.release_settings, p.known_hosts, p.site_available, p.site_enabled,
                         *([p.logrotate] if p.logrotate else [])):
                add("file", path, name)
            add("user", app.user, name)
            # kept with the releases they point at: the app declared again comes back as it was
            for link in (p.app_link, p.venv_link):
                add("link", link, name, f"rm -f {shlex.quote(link)}")
            data = [p.releases, p.state_dir, p.venvs, p.backup_dir, f"/home/{app.user}",
                    *([app.log_dir] if app.log_dir else [])]
            if isinstance(app.database, SqliteDatabase):
                data.append(app.database.path)
            for path in data:
                # a glob stays unquoted for the shell to expand; every other path is one word
                add("directory", path, name, f"rm -rf {path if path.endswith('*') else shlex.quote(path)}")
            if app.nginx.tls:  # the links nginx reads go with the site; the certificate is kept
                domain = app.nginx.server_names[0]
                for path in (HOST.tls_chain(domain), HOST.tls_key(domain)):
                    add("file", path, name)
                add("directory", f"/etc/letsencrypt/live/{domain}", name,
                    f"certbot delete --non-interactive --cert-name {shlex.quote(domain)}")
        if self.shared_site_ports():
            for sites in (NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED):
                add("file", f"{sites}/{UNKNOWN_NAMES_SITE}")
        if self.postgres is not None:
            for db in self.postgres.databases:
                add("database", db, "", f"runuser -u postgres -- dropdb {shlex.quote(db)}")
            for role in self.postgres.roles:
                add("role", role, "", f"runuser -u postgres -- dropuser {shlex.quote(role)}")
        return sorted(out, key=lambda e: (str(e["kind"]), str(e["name"])))

    def open_tcp_ports(self) -> list[int]:
        """The TCP ports reachable from outside the host: sshd, each app's site (and 443 for TLS
        sites), and firewall.extra_tcp_ports. Derived here only."""
        ports = {self.ssh.port, *self.firewall.extra_tcp_ports}
        for app in self.apps.values():
            ports.add(app.nginx.port)
            if app.nginx.tls:
                ports.add(443)
        return sorted(ports)

    @model_validator(mode="after")
    def _cross_checks(self) -> HostConfig:
        for name, app in self.apps.items():
            if app.nginx.tls and self.tls is None:
                raise option_error(f"apps.{name}.nginx.tls", "is on but the host has no `tls` section; "
                                   "set tls = {'email': ...} in group_data, or turn tls off")
            for db in [app.database, *app.extra_databases.values()]:
                if isinstance(db, PostgresDatabase):
                    pg = self.postgres
                    if pg is None or db.name not in pg.databases or db.role not in pg.roles:
                        raise option_error(f"apps.{name}", (
                            f"uses PostgreSQL database {db.name!r} as {db.role!r}: declare them in "
                            f"postgres.roles and postgres.databases"))
        self._apps_distinct()
        self._extra_ports_distinct()
        if self.backups is not None and self.backups.local.databases is not None:
            known = self.backup_databases(declared_only=True)
            for db in self.backups.local.databases:
                if db not in known:
                    raise option_error("backups.local.databases", (
                        f"{db!r} is not a database of this host; declared: {', '.join(known) or 'none'} "
                        "(postgres.databases, or an app name for its SQLite database)"))
        return self

    def _apps_distinct(self) -> None:
        """Two apps never share a user, unit, site or port, and none takes a name or port the
        system or another service of the host has (each would silently overwrite the other)."""
        taken_ports = {self.ssh.port: "sshd (ssh.port)"}
        if self.postgres:
            taken_ports[5432] = "PostgreSQL (postgres section)"
        users: dict[str, str] = {}
        units: dict[str, str] = {}
        sites: dict[str, str] = {}
        ports: dict[int, str] = dict(taken_ports)
        site_users: dict[int, list[str]] = {}  # port -> the apps whose site listens there
        dirs: dict[str, str] = {}
        backup_units = self._backup_unit_names()
        for name, app in self.apps.items():
            at = f"apps.{name}"
            if app.user in RESERVED_USERS or app.user in (self.admin.name, self.apps_group):
                raise option_error(f"{at}.user", f"{app.user!r} is a user of the system, the admin or the apps "
                                   f"group; give the app a user of its own (example: {name!r})")
            if app.user in users:
                raise option_error(f"{at}.user", f"{app.user!r} is already the user of apps.{users[app.user]}; "
                                   "each app runs as its own user (its env file and key are readable by it)")
            users[app.user] = name
            if app.unit in RESERVED_UNITS or app.unit.startswith("systemd-") or app.unit in backup_units:
                raise option_error(f"{at}.unit", f"{app.unit!r} is the unit of another service on this host; "
                                   f"use e.g. 'gunicorn-{name}'")
            if app.unit in units:
                raise option_error(f"{at}.unit", f"{app.unit!r} is already the unit of {units[app.unit]}; "
                                   f"use e.g. 'gunicorn-{name}'")
            units[app.unit] = f"apps.{name}"
            for proc, unit in self.app_paths(name).process_units.items():
                if unit in RESERVED_UNITS or unit.startswith("systemd-") or unit in backup_units or unit in units:
                    raise option_error(f"{at}.processes.{proc}.unit", (
                        f"{unit!r} is already the unit of {units.get(unit, 'another service on this host')}; "
                        f"set processes.{proc}.unit to a name of its own (example: '{name}-{proc}-worker')"))
                units[unit] = f"apps.{name}.processes.{proc}"
            site = app.nginx.name
            if site in RESERVED_SITES:
                raise option_error(f"{at}.nginx.name", f"{site!r} is reserved (Debian's default site, which the "
                                   f"repo removes, or its site for unknown names); use e.g. {name!r}")
            if site in sites:
                raise option_error(f"{at}.nginx.name", f"{site!r} is already the site of apps.{sites[site]}: "
                                   f"the second would overwrite the first; use e.g. {name!r}")
            sites[site] = name
            # a state or log directory is chowned to its app's user: two apps cannot share one
            for option, path in (("database.path", posixpath.dirname(getattr(app.database, "path", "") or "")),
                                 ("log_dir", app.log_dir or "")):
                if path and path in dirs:
                    own = f"/var/lib/{name}/db.sqlite3" if option == "database.path" else f"/var/log/{name}"
                    raise option_error(f"{at}.{option}", f"{path} is already the state or log directory of "
                                       f"apps.{dirs[path]} (owned by its user); use one of this app's own, e.g. {own}")
                if path:
                    dirs[path] = name
            # a plain-HTTP site is its port's default server; TLS sites share their ports (443, and
            # the HTTP one that redirects) by name
            for port, option in ((app.nginx.port, "nginx.port"), *([(443, "nginx.tls")] if app.nginx.tls else [])):
                holders = site_users.get(port, [])
                if name in holders:
                    raise option_error(f"{at}.{option}", (
                        f"port {port} is already taken by apps.{name} itself (its nginx.port): with tls its "
                        "HTTPS server listens on 443 and nginx.port only redirects; pick another (example: 80)"))
                if port in ports and not holders:
                    raise option_error(f"{at}.{option}", f"port {port} is already taken by {ports[port]}: "
                                       "pick another port (example: 8003)")
                plain = [a for a in holders if not self.apps[a].nginx.tls]
                if holders and (plain or not app.nginx.tls):
                    raise option_error(f"{at}.{option}", (
                        f"port {port} is already taken by apps.{(plain or holders)[0]}; a plain-HTTP site is the "
                        "default server of its own port: pick another port (example: 8003), or make both TLS "
                        "sites (they then share 80 and 443 by name)"))
                for other in holders:
                    shared = set(app.nginx.server_names) & set(self.apps[other].nginx.server_names)
                    if shared or "_" in app.nginx.server_names:
                        raise option_error(f"{at}.nginx.server_names", (
                            f"shares port {port} with apps.{other}, so each name may belong to one site only: "
                            f"{sorted(shared or {'_'})} is taken there (example: ['shop.pravoo.in'])"))
                site_users.setdefault(port, []).append(name)
                ports[port] = f"apps.{name}"

    def site_ports(self) -> dict[int, list[str]]:
        """Each port nginx listens on for the apps' sites, and the apps whose site it serves (TLS
        sites: their HTTP port and 443). More than one app: the port is shared by name."""
        out: dict[int, list[str]] = {}
        for name, app in self.apps.items():
            for port in (app.nginx.port, *([443] if app.nginx.tls else [])):
                out.setdefault(port, []).append(name)
        return out

    def shared_site_ports(self) -> list[int]:
        """The ports several sites share by name (a site for unknown names answers there)."""
        return sorted(port for port, apps in self.site_ports().items() if len(apps) > 1)

    def _extra_ports_distinct(self) -> None:
        app_ports = {a.nginx.port for a in self.apps.values()} | (
            {443} if any(a.nginx.tls for a in self.apps.values()) else set())
        for i, port in enumerate(self.firewall.extra_tcp_ports):
            if port == self.ssh.port or port in app_ports or port in self.firewall.extra_tcp_ports[:i]:
                raise option_error(f"firewall.extra_tcp_ports.{i}", f"port {port} is already open (sshd, an app's "
                                   "site, or listed twice); list only further ports (example: [5000])")

    def _backup_unit_names(self) -> set[str]:
        if self.backups is None:
            return set()
        names = {self.backups.local.unit}
        for target in (self.backups.offsite.postgres, self.backups.offsite.system_state):
            if target is not None:
                names.add(target.unit)
        if self.backups.offsite.postgres is not None:
            names.add(self.backups.offsite.postgres.check_unit)
        return names

    def backup_databases(self, declared_only: bool = False) -> dict[str, dict[str, Any]]:
        """Databases the local backups dump: name -> {"engine", "path" or "owner" and "users"}.

        PostgreSQL databases are named as in postgres.databases, with the app roles that write into
        a database another role owns ("users": the engine restores a database the superuser owns as
        that role, never as the superuser); an app's SQLite database by the app's name.
        ``declared_only``: every candidate, ignoring backups.local.databases."""
        found: dict[str, dict[str, Any]] = {}
        if self.postgres is not None:
            writers: dict[str, set[str]] = {}
            for app in self.apps.values():
                for used in [app.database, *app.extra_databases.values()]:
                    if isinstance(used, PostgresDatabase):
                        writers.setdefault(used.name, set()).add(used.role)
            for db, owner in self.postgres.databases.items():
                found[db] = {"engine": "postgresql", "owner": owner,
                             "users": sorted(writers.get(db, set()) - {owner})}
        for name, app in self.apps.items():
            if isinstance(app.database, SqliteDatabase):
                found[name] = {"engine": "sqlite", "path": app.database.path, "owner": app.user}
        if declared_only or self.backups is None or self.backups.local.databases is None:
            return found
        return {k: v for k, v in found.items() if k in self.backups.local.databases}
