"""Who can get in: accounts with UID 0, accounts with a login shell, members of the groups that
give power (sudo, root, adm, shadow, disk, ...), and every account's authorized_keys."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from .findings import Finding
from .settings import BaselineSettings

NO_LOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync")
# a member of one of these can become root, read every secret or write any disk
POWER_GROUPS = ("root", "sudo", "adm", "shadow", "disk", "staff", "wheel")


def key_lines(path: Path) -> list[str] | None:
    """The key lines of an authorized_keys file (comments and blank lines left out), read without
    following a link; None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return ["(not a regular file: a link or something else)"]
    with os.fdopen(fd, errors="replace") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ["(not a regular file)"]
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def key_of(line: str) -> str:
    """A key line's type and base64 (options and comment left out): what identifies the key."""
    parts = line.split()
    for i, part in enumerate(parts):
        if part.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(parts):
            return f"{part} {parts[i + 1]}"
    return line


def check(settings: BaselineSettings) -> list[Finding]:
    declared = {a.name: a for a in settings.accounts}
    found: list[Finding] = []
    for pw in pwd.getpwall():
        if pw.pw_uid == 0 and pw.pw_name != "root":
            found.append(Finding("accounts", pw.pw_name, "+", "has UID 0 (a second root)", "report"))
        if pw.pw_shell not in NO_LOGIN and pw.pw_name not in declared and pw.pw_name != "root" and pw.pw_uid >= 1000:
            found.append(Finding("accounts", pw.pw_name, "+", f"a login account not declared (shell {pw.pw_shell})",
                                 "report"))
        # authorized keys: every account's, declared or not (a system account's key is a door too)
        home = Path(pw.pw_dir)
        for name in ("authorized_keys", "authorized_keys2"):
            path = home / ".ssh" / name
            lines = key_lines(path)
            if lines is None:
                continue
            account = declared.get(pw.pw_name)
            if account is None or account.keys is None:
                if account is None and lines:
                    found.append(Finding("keys", str(path), "+", f"{len(lines)} key(s) for {pw.pw_name}, an account "
                                         "whose keys are not declared", "remove-keys", ""))
                continue
            wanted = {key_of(k) for k in account.keys}
            extra = [line for line in lines if key_of(line) not in wanted]
            if extra or name == "authorized_keys2":
                what = (f"{len(extra)} key(s) not declared: " + ", ".join(key_of(x).split()[-1][-12:] for x in extra)
                        if extra else "a second authorized_keys file")
                found.append(Finding("keys", str(path), "+", what, "remove-keys", "\n".join(account.keys)))
    for group in POWER_GROUPS:
        try:
            members = set(grp.getgrnam(group).gr_mem)
        except KeyError:
            continue
        extra = sorted(members - set(settings.privileged_groups.get(group, [])))
        if extra:
            found.append(Finding("accounts", f"group {group}", "+", f"members not declared: {', '.join(extra)}",
                                 "report"))
    return found
