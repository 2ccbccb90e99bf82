"""Options of Tailscale (tailscale)."""

from __future__ import annotations

from pydantic import (
    Field,
)

from iac.values import Strict


class TailscaleSection(Strict):
    enabled: bool = Field(default=True, description="Install tailscale from its apt repository.",
                          examples=[True])
