"""The git forge, a host of its own: git over SSH, the fixture repositories, per-repository
deploy keys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .common import REPO, WorldError


def _grant_line(command: str, app: str, pubkey: str) -> str:
    """The forge's authorized_keys line granting ``pubkey`` read access to repository ``app``;
    a WorldError naming ``command`` if either is malformed."""
    if not re.fullmatch(r"[a-z0-9_]+", app):
        raise WorldError(f"{command}: bad repository name {app!r}")
    fields = pubkey.split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-")):
        raise WorldError(f"{command}: give an OpenSSH public key line")
    return f'restrict,command="/usr/local/bin/forge-shell {app}" {fields[0]} {fields[1]}'


class Forge:
    """Setting up the forge host's git server and granting deploy keys."""

    def ensure_forge(self) -> None:
        """A git server over SSH on the forge host, holding the fixture repositories.

        Deploy keys are registered per repository (``register-key``) and are read-only; the
        sandbox's own key may push. Repositories are rebuilt from sandbox/fixtures/ with fixed
        commit dates, so their tags have the same commit ids on every machine.
        """
        if self.ssh("forge", "test -x /usr/local/bin/forge-shell", check=False).returncode != 0:
            self.ssh("forge", "DEBIAN_FRONTEND=noninteractive apt-get -qq update && "
                     "DEBIAN_FRONTEND=noninteractive apt-get -qq install -y git >/dev/null")
            # every key of this user has a forced command (forge-shell); its shell runs that
            self.ssh("forge", "id git >/dev/null 2>&1 || useradd --system --home-dir /srv/git "
                     "--create-home --shell /bin/sh git")
            self.ssh("forge", "install -m 0755 /dev/stdin /usr/local/bin/forge-shell",
                     input=(REPO / "sandbox/standins/forge-shell").read_text())
            pub = self.ssh_key.with_suffix(".pub").read_text().strip()
            self.ssh("forge", "install -d -o git -g git -m 0700 /srv/git/.ssh && "
                     "install -o git -g git -m 0600 /dev/stdin /srv/git/.ssh/authorized_keys",
                     input=f'restrict,command="/usr/local/bin/forge-shell --admin" {pub}\n')
        build = self.dir / "fixture-repos"
        subprocess.run(["bash", str(REPO / "sandbox/fixtures/make_repos.sh"), str(build)],
                       check=True, stdout=subprocess.DEVNULL)
        tar = subprocess.run(["tar", "-C", str(build), "-c", "."], check=True,
                             capture_output=True).stdout
        subprocess.run(
            ["ssh", "-F", str(self.ssh_config), f"{self.name}-forge",
             "rm -rf /srv/git/repos.new && mkdir /srv/git/repos.new && "
             "tar -C /srv/git/repos.new -x && for r in /srv/git/repos.new/*.git; do "
             "n=$(basename $r); rm -rf /srv/git/$n; mv $r /srv/git/$n; done && "
             "rmdir /srv/git/repos.new && chown -R git:git /srv/git"],
            input=tar, check=True, capture_output=True,
        )

    def register_key(self, app: str, pubkey: str) -> None:
        """Grant ``pubkey`` read access to the fixture repository ``app`` (a deploy key)."""
        line = _grant_line("register-key", app, pubkey)
        self.ssh("forge", f"grep -qxF '{line}' /srv/git/.ssh/authorized_keys || "
                 f"echo '{line}' >> /srv/git/.ssh/authorized_keys")

    def unregister_key(self, app: str, pubkey: str) -> None:
        """Take ``pubkey``'s grant to ``app`` away (a deploy key deleted on the git host)."""
        line = _grant_line("unregister-key", app, pubkey)
        self.ssh("forge", "f=/srv/git/.ssh/authorized_keys; { grep -vxF -f /dev/stdin $f || true; } > $f.new && "
                 "cat $f.new > $f && rm $f.new", input=line + "\n")

    def add_repo(self, app: str, source: Path) -> str:
        """Put the git repository ``source`` (a local clone: every branch and tag) on the forge as
        ``<app>.git``, the name the sandbox's inventory gives every declared app (``repo_url``);
        replaced if it is there. The bare repository is made by root on the forge (the git user
        may only run git there), then the sandbox's own key pushes to it. Returns its URL."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", app):
            raise WorldError(f"add-repo: {app!r} is not an app name (lower-case letters, digits, _): the "
                             "repository is named after the app, as apps.<app> in group_data")
        if subprocess.run(["git", "-C", str(source), "rev-parse", "--git-dir"], capture_output=True,
                          check=False).returncode != 0:
            raise WorldError(f"add-repo: {source} is not a git repository (give a local clone)")
        self.ssh("forge", f"rm -rf /srv/git/{app}.git && git init -q --bare /srv/git/{app}.git && "
                 f"chown -R git:git /srv/git/{app}.git")
        known = self.dir / "ssh" / "forge_known_hosts"
        known.write_text(f"{self.host_ip('forge')} {self.forge_host_key()}\n")
        ssh = (f"ssh -i {self.ssh_key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
               f"-o UserKnownHostsFile={known}")
        url = self.repo_url(app)
        pushed = subprocess.run(["git", "-C", str(source), "push", "-q", url, "refs/heads/*:refs/heads/*",
                                 "refs/tags/*:refs/tags/*"], env={"GIT_SSH_COMMAND": ssh, "PATH": "/usr/bin:/bin",
                                                                   "HOME": str(self.dir)},
                                capture_output=True, text=True, check=False, timeout=300)
        if pushed.returncode != 0:
            raise WorldError(f"add-repo: git push to {url} failed: {pushed.stderr.strip()[-500:]}")
        return url
