"""nginx: one site per app, validated with `nginx -t` before it goes live.

Stages: install -> configure (render each site to a staging path) -> activate (replace, enable,
drop the default site, `nginx -t`, reload; or put everything back and fail).

A plain-HTTP site is the default server of its own port. TLS sites may share 443 (and the HTTP
port that redirects) by name; where several do, none is the port's default: the site for unknown
names (``UNKNOWN_NAMES_SITE``) is, and answers no app's content (HTTP: the connection is closed,
444; HTTPS: the handshake is refused, so no certificate of any site is shown either).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.files import Link, Sha256File

from iac.declared import declares
from iac.guarded import unless_ok
from iac.ops import files, systemd
from iac.packages import packages_present
from iac.paths import NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED, STAGED
from iac.render import render, text_file
from operations.app.context import app_context
from operations.app.facts import HttpStatus, http_check_command
from operations.host import UNKNOWN_NAMES_SITE, HostConfig

AVAILABLE, ENABLED = NGINX_SITES_AVAILABLE, NGINX_SITES_ENABLED


def _site_files(kwargs: dict) -> list[str]:
    site = kwargs["site"]
    return [f"{STAGED}{AVAILABLE}/{site}", f"{AVAILABLE}/{site}", f"{ENABLED}/{site}"]


@declares(files=_site_files)
@operation()
def site_live(site: str, remove_default: bool = True):
    """
    Ensure the staged nginx site is the live, enabled one, and nginx accepts the configuration.

    + site: file name in sites-available (the staged copy is under /etc/iac/staged)
    + remove_default: disable Debian's default site

    A configuration `nginx -t` rejects is never left in place: the previous file and link state
    are restored and the operation fails, so nginx keeps serving what it served.

    **Example:**

    .. code:: python

        site_live(name="nginx site django live", site="django")
    """
    staged = f"{STAGED}{AVAILABLE}/{site}"
    live, link = f"{AVAILABLE}/{site}", f"{ENABLED}/{site}"
    same = host.get_fact(Sha256File, path=staged) == host.get_fact(Sha256File, path=live)
    link_fact = host.get_fact(Link, path=link)
    linked = bool(link_fact) and link_fact.get("link_target") in (live, f"../sites-available/{site}")
    default_on = remove_default and bool(host.get_fact(Link, path=f"{ENABLED}/default"))
    if same and linked and not default_on:
        return
    if not same:
        host.noop(f"~ update {live}: differs from the declared site")
    if not linked:
        host.noop(f"+ create {link} -> {live} (the site is not enabled)")
    if default_on:
        host.noop(f"- delete {ENABLED}/default (Debian's default site is enabled again)")
    q = shlex.quote
    backup = f"{STAGED}/nginx-backup.tar"
    yield StringCommand(
        f"tar -C / -cf {backup} etc/nginx/sites-available etc/nginx/sites-enabled; "
        f"install -m 644 {q(staged)} {q(live)} && ln -sfn {q(live)} {q(link)}"
        + (f" && rm -f {ENABLED}/default" if remove_default else "") + "; "
        + unless_ok("nginx -t", f"rm -rf /etc/nginx/sites-enabled/* && tar -C / -xf {backup}; "
                    f"echo 'REFUSED: nginx -t rejected site {site}; the previous configuration is back' >&2; exit 1")
        + "; if systemctl is-active --quiet nginx; then systemctl reload nginx; else systemctl start nginx; fi"
    )


@operation()
def site_absent(site: str):
    """
    Ensure the nginx site ``site`` is neither enabled nor available; nginx reloads without it.

    + site: file name in sites-available

    **Example:**

    .. code:: python

        site_absent(name="No site for unknown names", site="iac-unknown-names")
    """
    live, link = f"{AVAILABLE}/{site}", f"{ENABLED}/{site}"
    if not host.get_fact(Link, path=link) and host.get_fact(Sha256File, path=live) is None:
        return
    host.noop(f"- delete {link} and {live}")
    yield StringCommand(f"rm -f {shlex.quote(link)} {shlex.quote(live)} && nginx -t -q && "
                        "if systemctl is-active --quiet nginx; then systemctl reload nginx; fi")


def site_text(config: HostConfig, name: str) -> str:
    """App ``name``'s nginx site: its port's default unless apps share the port by name, HTTP/2
    spelled as the host release's nginx takes it."""
    app, shared = config.apps[name], config.shared_site_ports()
    return render("etc/nginx/sites-available/app.conf.j2", default_server=app.nginx.port not in shared,
                  default_tls=443 not in shared, http2_directive=config.debian().nginx_http2_directive,
                  **app_context(config, name, app))


def nginx_sites(config: HostConfig) -> None:
    """nginx in front of every app on the host."""
    # logrotate: nginx's own /etc/logrotate.d/nginx is read by it (a minimal image lacks it; logs grew forever)
    packages_present(["nginx", "logrotate"], config.base.apt_cache_hours, "nginx")
    files.directory(name="Staging directory for nginx sites", path=f"{STAGED}{AVAILABLE}", mode="755")
    shared = config.shared_site_ports()
    if not shared:  # first: a site about to become its port's default would clash with it
        site_absent(name="nginx: no site for unknown names (no port is shared)", site=UNKNOWN_NAMES_SITE)
    for name, app in config.apps.items():
        text = site_text(config, name)
        files.put(name=f"nginx site {app.nginx.name} (staged)", src=text_file(text),
                  dest=f"{STAGED}{AVAILABLE}/{app.nginx.name}", mode="644")
        site_live(name=f"nginx site {app.nginx.name} (checked with nginx -t, live)", site=app.nginx.name)
    if shared:  # last: the sites have stopped being their ports' default servers
        text = render(f"etc/nginx/sites-available/{UNKNOWN_NAMES_SITE}.j2", http_ports=[p for p in shared if p != 443],
                      tls=443 in shared)
        files.put(name="nginx site for unknown names (staged)", src=text_file(text),
                  dest=f"{STAGED}{AVAILABLE}/{UNKNOWN_NAMES_SITE}", mode="644")
        site_live(name=f"nginx: names no app serves on ports {', '.join(map(str, shared))} get nothing "
                  "(checked with nginx -t, live)", site=UNKNOWN_NAMES_SITE)
    systemd.service(name="nginx running and enabled", service="nginx", running=True, enabled=True)


@operation()
def site_answers(url: str, host_header: str, port: int, tls: bool):
    """
    Ensure the site answers through nginx as its users reach it; the run fails while it does not.

    + url: path to ask for, e.g. ``/``
    + host_header: the name users type (``pravoo.in``); sent as Host and, with TLS, as SNI
    + port: the port nginx listens on for the site
    + tls: ask over HTTPS

    The certificate itself is checked by certbot and by the tests from outside; this is about
    nginx reaching the app with the real Host header. A site that answers is no change, so a
    converged run stays change-free; one that does not is reported by every run and by the drift
    gate until it is fixed (a site nginx accepts but that points nowhere is not "in sync").

    **Example:**

    .. code:: python

        site_answers(name="pravoo.in answers through nginx", url="/", host_header="pravoo.in",
                     port=443, tls=True)
    """
    code = host.get_fact(HttpStatus, url=url, host_header=host_header, port=port, tls=tls)
    if code[:1] in ("2", "3"):
        return
    scheme = "https" if tls else "http"
    # asked again when the run gets here (the fact may be from before this run's changes)
    yield StringCommand(
        f"code=$({http_check_command(url, host_header, port, tls)}); "
        "case $code in 2??|3??) exit 0;; esac; "
        f"echo \"{scheme}://{host_header}:{port}{url} through nginx answered HTTP $code\" >&2; exit 1"
    )


def sites_answer(config: HostConfig, only: str | None = None) -> None:
    """Last: every app (or ``only`` that one) answers through nginx with the Host header its users send."""
    for name, app in config.apps.items():
        if only and name != only:
            continue
        host_header = app_context(config, name, app)["host_header"]
        port = 443 if app.nginx.tls else app.nginx.port
        site_answers(name=f"{name}: {host_header} answers through nginx", url="/",
                     host_header=host_header, port=port, tls=app.nginx.tls)
