"""What an app's files are rendered from: its derived values and its environment."""

from __future__ import annotations

from datetime import datetime

from pydantic import SecretStr

from iac.paths import HOST
from operations.app.options import DjangoApp, PostgresDatabase, SqliteDatabase
from operations.app.paths import APP_SANDBOXING
from operations.host import HostConfig


def env_file_path(config: HostConfig, name: str) -> str:
    return config.app_paths(name).env_file


def app_view(app: DjangoApp) -> DjangoApp:
    """The app as templates other than its env file see it: its secrets left out (its secret key,
    its fallbacks, secret_env, the alert webhook), so no secret reaches a file that does not write it."""
    return app.model_copy(update={"secret_key": SecretStr(""), "secret_key_fallbacks": {}, "secret_env": {},
                                  "discord_alerts": None})


def env_context(config: HostConfig, name: str, app: DjangoApp) -> dict:
    """What the env file is rendered from: the app's user and its environment (secrets included:
    the one file that writes them, root:<app> 0640)."""
    values = app_context(config, name, app)
    return {"app": values["app"], "environment": app_environment(app, name, values["allowed_hosts"],
                                                                 values["csrf_origins"])}


def app_context(config: HostConfig, name: str, app: DjangoApp) -> dict:
    """What an app's units, site and log rotation are rendered from: derived values, no secret."""
    paths = config.app_paths(name)
    pg = [db for db in [app.database, *app.extra_databases.values()] if isinstance(db, PostgresDatabase)]
    canonical = app.nginx.server_names[0]
    host_header = canonical if canonical != "_" else "localhost"
    allowed = list(app.allowed_hosts)
    if config.network is not None and (ip := config.network.address.split("/")[0]) not in allowed:
        allowed.append(ip)  # the address the host is reached by on the LAN
    # the origins browsers send for the site's names: with the port unless it is the scheme's own
    scheme, port = ("https", 443) if app.nginx.tls else ("http", app.nginx.port)
    suffix = "" if port in (80, 443) else f":{port}"
    csrf_origins = [f"{scheme}://{'*' + h if h.startswith('.') else h}{suffix}"
                    for h in app.nginx.server_names if h != "_"]
    return {
        "name": name,
        "app": app_view(app),
        "paths": paths,
        "allowed_hosts": allowed,
        "env_file": paths.env_file,
        "csrf_origins": csrf_origins,
        "pg_databases": [db.name for db in pg],
        "migrate_databases": ["default", *app.extra_databases],
        "uses_postgres": bool(pg),
        "host_header": host_header,
        # nginx's certificate and key for the site: the links under HOST.tls_links
        "tls_chain": HOST.tls_chain(canonical),
        "tls_key": HOST.tls_key(canonical),
        # ExecStart's program: the unit runs it, the unit check accepts its absence before release 1
        "gunicorn": paths.gunicorn,
        # the release is checked on gunicorn's socket, as nginx will call it
        "health_url": f"http://localhost{app.health.path}",
        "health_socket": paths.socket,
        "health_headers": [f"Host:{host_header}", *(["X-Forwarded-Proto:https"] if app.nginx.tls else [])],
        # after the switch, through nginx as users reach it (once the site exists)
        "nginx_health_url": (f"https://{host_header}{app.health.path}" if app.nginx.tls
                             else f"http://{host_header}:{app.nginx.port}{app.health.path}"),
        "nginx_resolve": f"{host_header}:{443 if app.nginx.tls else app.nginx.port}:127.0.0.1",
        "sqlite_state_dir": (app.database.path.removeprefix("/var/lib/").rsplit("/", 1)[0]
                             if app.database.engine == "sqlite" else ""),
        "logs_directory": (app.log_dir or "").removeprefix("/var/log/"),
        # the unit lines that confine the app (the release engine's transient units get the same)
        "sandboxing": APP_SANDBOXING,
        # a unit that gives up (its start limit hit: a crash loop) posts one message to the host's
        # alert webhook, through the alert unit the backups install (backups.alerts)
        "on_failure": HOST.alert_on_failure if config.backups is not None else None,
    }


def app_environment(app: DjangoApp, name: str, allowed_hosts: list[str], csrf_origins: list[str],
                    now: datetime | None = None) -> dict[str, str]:
    """The app's environment, in the order the env file lists it: what the repo derives from the
    model, under the names the app reads (``settings_env``; ``DjangoApp.managed_env_keys``
    reserves them), then ``env``, then ``secret_env``."""
    names = app.settings_env
    env = {"DJANGO_SETTINGS_MODULE": app.settings_module, names.secret_key: app.secret_key.get_secret_value()}

    def put(variable: str | None, value: str) -> None:
        if variable is not None:  # None: the app reads no such variable
            env[variable] = value

    # older keys Django still accepts (only unexpired ones: the day one expires, the file changes)
    put(names.secret_key_fallbacks, ",".join(app.live_fallbacks(now)))
    put(names.debug, names.debug_off())
    if (url := app.nginx.public_url()) is not None:  # the model refuses a public_url name without one
        put(names.public_url, url)
    put(names.allowed_hosts, ",".join(allowed_hosts))
    if csrf_origins:
        put(names.csrf_trusted_origins, ",".join(csrf_origins))
    put(names.secure_cookies, "1" if app.nginx.tls else "0")
    if isinstance(app.database, SqliteDatabase):
        put(names.use_sqlite, "1")
        put(names.sqlite_path, app.database.path)
    else:
        put(names.use_sqlite, "0")
        put(names.postgres_db, app.database.name)
        put(names.postgres_user, app.database.role)
        put(names.postgres_host, "")
    for prefix, db in app.extra_databases.items():
        env |= {f"{prefix.upper()}_POSTGRES_DB": db.name, f"{prefix.upper()}_POSTGRES_USER": db.role,
                f"{prefix.upper()}_POSTGRES_HOST": ""}
    if app.discord_alerts:
        alerts = app.discord_alerts
        env |= {
            "DISCORD_WEBHOOK_URL": alerts.webhook_url.get_secret_value(),
            "DISCORD_ALERTS_ENABLED": "true" if alerts.enabled else "false",
            "DISCORD_ALERTS_DEDUP_SECONDS": str(alerts.dedup_seconds),
            "DISCORD_ALERTS_TIMEOUT_SECONDS": str(alerts.timeout_seconds),
            "DISCORD_ALERTS_APP_NAME": name,
            "DISCORD_ALERTS_ENV": alerts.environment,
        }
    # the model refuses env/secret_env names that the repo sets: nothing below overrides the above
    env |= dict(app.env)
    env |= {k: v.get_secret_value() for k, v in app.secret_env.items()}
    return env
