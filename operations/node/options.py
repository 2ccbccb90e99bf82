"""Options of Node.js for front-end builds (node)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from iac.values import Strict


class NodeSection(Strict):
    source: Literal["nodesource", "debian"] = Field(
        default="nodesource",
        description="Where nodejs comes from: NodeSource's apt repository (runbook) or Debian's own package.",
        examples=["nodesource"],
    )
    major: int = Field(default=20, ge=18, le=30, description="NodeSource major version (node_<major>.x).",
                       examples=[20])
