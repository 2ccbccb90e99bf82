"""An app's identity: its system user, its deploy key (made on the host once), the git host's
pinned key. Everything in the app's home is done as the app user."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, OperationError, StringCommand, operation
from pyinfra.facts.files import Directory, File

from iac.ops import files, server
from iac.render import text_file
from operations.app.options import DjangoApp
from operations.host import HostConfig


def app_identity(config: HostConfig, name: str, app: DjangoApp) -> None:
    """The app's system user, its deploy key (made once on the host) and the pinned git host key.

    The app's home is the app's: everything root does there (the ~/.ssh directory, a restored
    key) runs as the app user, so a link the app plants there is never followed by root. The
    pinned host key is root's file outside it: the app can neither redirect nor change it."""
    server.group(name=f"App group {app.user}", group=app.user, system=True)
    if config.apps_group:
        server.group(name=f"Group {config.apps_group} of all apps", group=config.apps_group, system=True)
    server.user(
        name=f"App user {app.user}", user=app.user, group=app.user, system=True,
        groups=[config.apps_group] if config.apps_group else None,
        home=f"/home/{app.user}", shell="/usr/sbin/nologin", create_home=True, ensure_home=True,
    )
    paths = config.app_paths(name)
    key = paths.deploy_key
    app_user_directory(name=f"{app.user}: ~/.ssh (made as the app user)", user=app.user,
                       path=str(Path(key).parent), mode="700")
    # Made on the host, once: the private key never leaves it. `make deploy-keys` shows the
    # public half for registering on the git host.
    # a rebuild after a disaster (`make dr`) staged the old host's state: its key is still the one
    # registered on the git host
    ss = config.backups.offsite.system_state if config.backups else None
    deploy_key(name=f"{app.user}: deploy key (made once, never replaced)", user=app.user, path=key,
               comment=f"{app.user}@{config.host.hostname}", restored=f"{ss.staging_dir}{key}" if ss else None)
    git_host = _git_host(app.source.url)
    files.put(
        name=f"{name}: pinned host key of {git_host}",
        src=text_file(f"{git_host} {app.source.host_key}\n"),
        dest=paths.known_hosts, user="root", group="root", mode="644",
    )


def _git_host(url: str) -> str:
    """known_hosts name of the git server in an SSH URL (with [host]:port for other ports)."""
    m = re.match(r"^ssh://(?:[^@/]+@)?([^/:]+)(?::(\d+))?/", url) or re.match(r"^[^@]+@([^:]+):", url)
    if not m:
        raise ValueError(f"cannot find the host in git URL {url!r}")
    port = m.group(2) if m.re.groups > 1 else None
    return f"[{m.group(1)}]:{port}" if port and port != "22" else m.group(1)


@operation()
def deploy_key(user: str, path: str, comment: str, restored: str | None = None):
    """
    Ensure an SSH key pair exists for ``user``; an existing key is never replaced.

    + user: owner of the key (the key is made as this user)
    + path: private key path; the public key is ``path + ".pub"``
    + comment: key comment
    + restored: where a disaster-recovery restore staged the old host's key: used, if there,
      instead of making a new one (which would have to be registered on the git host again)

    **Example:**

    .. code:: python

        deploy_key(name="Deploy key", user="shop_scheduler",
                   path="/home/shop_scheduler/.ssh/id_ed25519", comment="shop_scheduler@gts-server")
    """
    if host.get_fact(File, path=path):
        return
    if restored and host.get_fact(File, path=restored):
        # root reads the staged copy; the app user writes its own file (root never writes there)
        for src, dest, mode in ((restored, path, "600"), (f"{restored}.pub", f"{path}.pub", "644")):
            write = shlex.quote(f"umask 077 && cat > {dest} && chmod {mode} {dest}")
            yield StringCommand(f"runuser -u {user} -- sh -c {write} < {shlex.quote(src)}")
        return
    yield StringCommand(f"runuser -u {user} -- ssh-keygen -q -t ed25519 -N '' -C {comment} -f {path}")


@operation()
def app_user_directory(user: str, path: str, mode: str):
    """
    Ensure a directory in an app user's own tree exists with ``mode``, made by that user: root
    never creates, chowns or chmods a path the app could have replaced with a link.

    + user: the app user (owner of the directory and of its parent)
    + path: the directory
    + mode: its permissions (octal string)

    **Example:**

    .. code:: python

        app_user_directory(name="~/.ssh", user="shop_scheduler", path="/home/shop_scheduler/.ssh", mode="700")
    """
    info = host.get_fact(Directory, path=path)
    if info and info["user"] == user and info["mode"] == int(mode):
        return
    if info is False:
        raise OperationError(f"{path} exists and is not a directory (a link?): remove it, then run again")
    yield StringCommand(f"runuser -u {user} -- sh -c {shlex.quote(f'mkdir -p {path} && chmod {mode} {path}')}")


class NotOwnedBy(FactBase):
    """How many files and directories under ``path`` (not crossing into other filesystems, never
    following a link) are not owned by ``user``, and the first few of them; ``{"count": 0}`` when
    none or when ``path`` is missing."""

    def command(self, path: str, user: str) -> str:
        q = shlex.quote
        return (f"test -d {q(path)} || exit 0; find {q(path)} -xdev ! -user {q(user)} -print0 2>/dev/null "
                f"| tr '\\0\\n' '\\n?' | awk 'NR<=5 {{print}} END {{print \"count=\" NR}}'")

    def process(self, output: list[str]) -> dict:
        count = next((int(line[6:]) for line in output if line.startswith("count=") and line[6:].isdigit()), 0)
        return {"count": count, "first": [line for line in output if not line.startswith("count=")][:5]}

    @staticmethod
    def default() -> dict:
        return {"count": 0, "first": []}


@operation()
def app_files_owned(user: str, path: str):
    """
    Ensure everything in an app's own data directory belongs to the app user (a file root or
    another account left there, by running the app as root or by hand, breaks the app: SQLite
    "unable to open database file").

    + user: the app user
    + path: its data directory (the SQLite directory, its log directory)

    Never follows a link: ``find`` walks without following, ``chown -h`` changes a link itself.

    **Example:**

    .. code:: python

        app_files_owned(name="chip_dashboard: its data is its own", user="chip_dashboard",
                        path="/var/lib/chip_dashboard")
    """
    found = host.get_fact(NotOwnedBy, path=path, user=user)
    if not found["count"]:
        return
    shown = ", ".join(found["first"][:3])
    host.noop(f"~ {found['count']} file(s) in {path} not owned by {user}: {shown}")
    q = shlex.quote
    yield StringCommand(f"find {q(path)} -xdev ! -user {q(user)} -exec chown -h {q(user)}:{q(user)} {{}} +")
