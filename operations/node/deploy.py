"""Node.js for the apps' front-end builds: NodeSource's repository as the runbook says, or Debian's
package (the sandbox, which cannot reach NodeSource)."""

from __future__ import annotations

from iac.ops import apt, files
from iac.packages import packages_present
from operations.host import HostConfig


def nodejs(config: HostConfig) -> None:
    if not any(app.frontend_build for app in config.apps.values()):
        return
    if config.node.source == "debian":
        packages_present(["nodejs", "npm"], config.base.apt_cache_hours, "Node.js (Debian)")
        return
    packages_present(["gnupg", "ca-certificates", "curl"], config.base.apt_cache_hours, "NodeSource key")
    files.download(name="NodeSource signing key", src="https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
                   dest="/usr/share/keyrings/nodesource.asc", mode="644")
    apt.repo(name=f"NodeSource repository (node_{config.node.major}.x)",
             src=f"deb [signed-by=/usr/share/keyrings/nodesource.asc] "
                 f"https://deb.nodesource.com/node_{config.node.major}.x nodistro main",
             filename="nodesource")
    # 0: refresh the lists whenever nodejs is missing, so the new repository is seen
    packages_present(["nodejs"], 0, "Node.js (NodeSource)")
