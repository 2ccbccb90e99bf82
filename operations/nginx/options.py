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
        description="Serve HTTPS on 443 with a certificate from certbot for server_names[0]; HTTP redirects. "
                    "Several TLS sites share 443 (and port 80) by name, each with its own certificate; a name "
                    "none of them serves gets nothing (the TLS handshake is refused, HTTP is closed unanswered).",
        examples=[True],
    )

    def public_url(self) -> str | None:
        """The URL users reach the site by: its scheme, canonical (first) name, and the port unless it
        is the scheme's own; None when the site answers any name ('_' first)."""
        if self.server_names[0] == "_":
            return None
        scheme, port = ("https", 443) if self.tls else ("http", self.port)
        return f"{scheme}://{self.server_names[0]}{'' if port in (80, 443) else f':{port}'}"
