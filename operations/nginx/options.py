"""Options of an app's nginx site (apps.<name>.nginx)."""

from __future__ import annotations

from pydantic import (
    Field,
)

from iac.values import Name, ServerName, Strict


class NginxSite(Strict):
    name: Name = Field(description="File name in /etc/nginx/sites-available ('default' is Debian's own site, "
                       "which the repo removes).", examples=["django"])
    port: int = Field(default=80, ge=1, le=65535, description="Port nginx listens on (plain HTTP).",
                      examples=[80, 8001])
    server_names: list[ServerName] = Field(
        default=["_"], min_length=1,
        description="server_name values; the first is the canonical name (and the TLS certificate's).",
        examples=[["pravoo.in"]],
    )
    tls: bool = Field(
        default=False,
        description="Serve HTTPS on 443 with a certificate from certbot for server_names[0]; HTTP redirects.",
        examples=[True],
    )
