"""TLS certificates from an ACME CA with certbot (webroot), renewed by Debian's certbot.timer.

Order matters on a fresh host: nginx needs a certificate to start its HTTPS server, and certbot
needs nginx to answer the HTTP-01 challenge. So nginx first uses a self-signed certificate
through stable links in /etc/iac/tls/<domain>/; certbot's deploy hook points the links at the
issued certificate and reloads nginx. Later runs see the live certificate and change nothing.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation

from iac.ops import files, systemd
from iac.packages import packages_present
from iac.paths import HOST
from iac.render import text_file
from iac.repo import TEMPLATES
from iac.upgrading import until_switch
from operations.app.facts import TlsCertificate
from operations.host import HostConfig
from operations.tls.options import TlsSection

HOOK = "/usr/local/sbin/iac-tls-deploy-hook"
WEBROOT = "/var/www/acme"
CA_BUNDLE = "/etc/iac/acme-ca.pem"



def tls_domains(config: HostConfig) -> list[str]:
    return [app.nginx.server_names[0] for app in config.apps.values() if app.nginx.tls]


def certificate_links(config: HostConfig) -> None:
    """Before nginx: packages, webroot, hook, and the certificate links nginx reads."""
    if config.tls is None or not tls_domains(config):
        return
    tls: TlsSection = config.tls
    packages_present(["certbot", "ssl-cert"], config.base.apt_cache_hours, "TLS")
    files.directory(name="ACME webroot", path=WEBROOT, mode="755")
    files.put(name="certbot deploy hook (links + nginx reload)",
              src=str(TEMPLATES / HOOK.lstrip("/")), dest=HOOK, mode="755")
    if tls.acme_ca_bundle:
        files.put(name="CA of the ACME server", src=text_file(tls.acme_ca_bundle), dest=CA_BUNDLE, mode="644")
        files.directory(name="certbot.service drop-in directory", path="/etc/systemd/system/certbot.service.d")
        files.put(name="certbot.service trusts the ACME server's CA",
                  src=text_file(f"# Managed by this repo (operations/tls/deploy.py)\n[Service]\n"
                                 f"Environment=REQUESTS_CA_BUNDLE={CA_BUNDLE}\n"),
                  dest="/etc/systemd/system/certbot.service.d/iac-acme-ca.conf", mode="644")
    for domain in tls_domains(config):
        cert = host.get_fact(TlsCertificate, domain=domain)
        files.directory(name=f"TLS links for {domain}", path=f"{HOST.tls_links}/{domain}", mode="755")
        if cert["live"]:
            chain, key = f"/etc/letsencrypt/live/{domain}/fullchain.pem", f"/etc/letsencrypt/live/{domain}/privkey.pem"
        else:
            chain, key = "/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key"
        files.link(name=f"{domain}: certificate chain link", path=HOST.tls_chain(domain),
                   target=chain)
        files.link(name=f"{domain}: private key link", path=HOST.tls_key(domain), target=key)


@operation()
def certificate_issued(domain: str, email: str, directory: str, ca_bundle: str | None = None):
    """
    Ensure certbot holds a certificate for ``domain`` from the ACME server ``directory``, renewed
    through the webroot nginx serves and with the deploy hook that reloads nginx.

    + domain: the certificate's name
    + email: ACME account e-mail
    + directory: ACME directory URL
    + ca_bundle: CA file to trust for the ACME server's HTTPS (sandbox's pebble)

    **Example:**

    .. code:: python

        certificate_issued(name="Certificate pravoo.in", domain="pravoo.in",
                           email="admin@pravoo.in",
                           directory="https://acme-v02.api.letsencrypt.org/directory")
    """
    cert = host.get_fact(TlsCertificate, domain=domain)
    renews_as_declared = (cert["server"] == directory and cert["authenticator"] == "webroot"
                          and cert["webroot"] == WEBROOT and cert["deploy_hook"] == HOOK)
    if cert["live"] and renews_as_declared:
        return
    env = f"REQUESTS_CA_BUNDLE={shlex.quote(ca_bundle)} " if ca_bundle else ""
    # A lineage made another way (by hand on an adopted host: another webroot, the nginx
    # plugin, no deploy hook) would fail or go unnoticed at its next renewal. certbot 2.1
    # (Debian 12) has no `reconfigure`; re-issuing is how its renewal settings get rewritten.
    renew = "--force-renewal" if cert["live"] else "--keep-until-expiring"
    yield StringCommand(
        f"{env}certbot certonly --non-interactive --agree-tos --email {shlex.quote(email)} "
        f"--server {shlex.quote(directory)} --webroot -w {WEBROOT} -d {shlex.quote(domain)} "
        f"--cert-name {shlex.quote(domain)} --deploy-hook {HOOK} {renew}"
    )


def certificates_deferred() -> bool:
    """On the new machine of an upgrade (iac/upgrading.py) the names still point at the old host,
    where the ACME server's HTTP-01 check would land: nginx serves the placeholder certificate
    (certificate_links) until the switch, and the first run after it issues the real ones."""
    return until_switch()


def certificates(config: HostConfig) -> None:
    """After nginx: issue missing certificates; renewals are certbot.timer's job."""
    if config.tls is None or not tls_domains(config):
        return
    if certificates_deferred():
        host.noop(f"certificates for {', '.join(tls_domains(config))}: issued by the first run after the switch "
                  "(the names point at the old host until then)")
        return
    for domain in tls_domains(config):
        certificate_issued(name=f"Certificate for {domain}", domain=domain, email=config.tls.email,
                           directory=config.tls.acme_directory,
                           ca_bundle=CA_BUNDLE if config.tls.acme_ca_bundle else None)
    systemd.service(name="certbot.timer renews certificates", service="certbot.timer",
                    running=True, enabled=True)
