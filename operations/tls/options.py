"""Options of certbot and the ACME server (tls)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
)

from iac.values import FQDN_RE, Strict, _check, _check_https_url, _check_pem, type_name


@type_name("https:// URL (plain http:// for an IP address only)")
def _check_acme_directory(value: str) -> str:
    return _check_https_url(value, "https://acme-v02.api.letsencrypt.org/directory")


class TlsSection(Strict):
    email: Annotated[str, _check(re.compile(r"[A-Za-z0-9._%+-]{1,64}@" + FQDN_RE.pattern.strip("^$")),
                                 "e-mail address", "admin@pravoo.in")] = Field(
        description="Account e-mail for the ACME CA (expiry notices).", examples=["admin@pravoo.in"])
    acme_directory: Annotated[str, AfterValidator(_check_acme_directory)] = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory URL (Let's Encrypt in production).",
        examples=["https://acme-v02.api.letsencrypt.org/directory"],
    )
    acme_ca_bundle: Annotated[str, AfterValidator(_check_pem)] | None = Field(
        default=None,
        description="PEM of the CA that signs the ACME server's own HTTPS certificate, if not a public one.",
        examples=[None], json_schema_extra={"multiline": True},
    )
    issuer_ca_bundle: Annotated[str, AfterValidator(_check_pem)] | None = Field(
        default=None,
        description="PEM of the root CA(s) the served certificates must chain to (the baseline's TLS check). "
                    "None: Let's Encrypt's ISRG Root X1 and X2 (files/etc/iac/letsencrypt-roots.pem).",
        examples=[None], json_schema_extra={"multiline": True},
    )
