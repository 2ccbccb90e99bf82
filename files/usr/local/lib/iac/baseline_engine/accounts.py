"""Who can get in: accounts with UID 0, accounts with a login shell, members of the groups that
give power (sudo, root, adm, shadow, disk, ...), and every account's authorized_keys."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

from engine_common.safefs import install_file, read_app_file, read_record, write_record

from .findings import Finding
from .quarantine import Quarantine
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
            found.append(Finding("accounts", pw.pw_name, "+", "has UID 0 (a second root)", "remove-account",
                                 pw.pw_name))
        elif pw.pw_shell not in NO_LOGIN and pw.pw_name not in declared and pw.pw_uid >= 1000 \
                and pw.pw_uid != 65534:
            found.append(Finding("accounts", pw.pw_name, "+", f"a login account not declared (shell {pw.pw_shell})",
                                 "lock-account", pw.pw_name))
        # authorized keys: every account's, declared or not (a system account's key is a door too)
        home = Path(pw.pw_dir)
        for name in ("authorized_keys", "authorized_keys2"):
            path = home / ".ssh" / name
            lines = key_lines(path)
            if not lines:
                continue
            account = declared.get(pw.pw_name)
            wanted = {key_of(k) for k in account.keys} if account and account.keys is not None else set()
            if account is not None and account.keys is None and name == "authorized_keys" \
                    and not lines[0].startswith("(not a regular file"):
                # not declared yet: an operator copies them into the option (never removed unasked)
                option = account.option or f"the keys of {pw.pw_name}"
                found.append(Finding("keys", str(path), "+",
                                     f"{len(lines)} key(s) while {option} is not declared: "
                                     + ", ".join(_short(x) for x in lines)
                                     + f" (declare them in {option}, or [] for none)", "report"))
                continue
            extra = [line for line in lines if key_of(line) not in wanted]
            if name == "authorized_keys2":
                extra = lines  # sshd reads it too: a second file is never declared
            if lines[0].startswith("(not a regular file"):
                # never read or rewritten through a link in an account's own directory
                found.append(Finding("keys", str(path), "~", f"{lines[0][1:-1]}: an operator must look", "report"))
                continue
            if extra:
                who = "" if account else f" (the account {pw.pw_name} has no declared keys)"
                what = f"{len(extra)} key(s) not declared: " + ", ".join(_short(x) for x in extra) + who
                keep = [] if name == "authorized_keys2" else sorted(wanted)
                found.append(Finding("keys", str(path), "+", what, "remove-keys",
                                     json.dumps({"user": pw.pw_name, "keep": keep})))
    for group in POWER_GROUPS:
        try:
            members = set(grp.getgrnam(group).gr_mem)
        except KeyError:
            continue
        for member in sorted(members - set(settings.privileged_groups.get(group, []))):
            found.append(Finding("accounts", f"group {group}", "+", f"member {member} not declared", "leave-group",
                                 json.dumps({"user": member, "group": group})))
    return found


def _short(line: str) -> str:
    """A key named for the report: its type and the end of its base64, and its comment."""
    parts = key_of(line).split()
    comment = line.split()[-1] if len(line.split()) > len(parts) else ""
    return f"{parts[0]} ...{parts[-1][-12:]}" + (f" {comment[:40]}" if comment else "")


# -- repairs (the converge) ------------------------------------------------------------------------

def keep_keys(finding: Finding, quarantine: Quarantine, pending: Path) -> None:
    """Only the declared key lines stay in the file (their own text, options included); the file as
    it was goes to the quarantine and is recorded in ``pending`` until the converge's second login
    commits the change (``revert_keys`` puts it back). Nothing in the account's home is followed."""
    argument = json.loads(finding.argument)
    path = Path(finding.path)
    original = read_app_file(path.parent, path.name)
    if original is None:
        return
    kept_copy = quarantine.keep(finding, move=False)
    wanted = set(argument["keep"])
    lines = original.decode("utf-8", "replace").splitlines()
    new = [line for line in lines if line.strip() and not line.lstrip().startswith("#") and key_of(line) in wanted]
    record = read_record(pending) or {"files": []}
    record["files"].append({"path": str(path), "user": argument["user"], "kept": str(kept_copy)})
    write_record(pending, record)
    with tempfile.NamedTemporaryFile("w", dir=quarantine.dir, delete=False) as tmp:
        tmp.write("".join(f"{line}\n" for line in new))
    try:
        install_file(Path(tmp.name), path, argument["user"], 0o600)
    finally:
        os.unlink(tmp.name)


def revert_keys(pending: Path) -> list[str]:
    """Every authorized_keys file of the last uncommitted key repair as it was (a failed second login)."""
    record = read_record(pending) or {"files": []}
    done = []
    for item in record["files"]:
        install_file(Path(item["kept"]), Path(item["path"]), item["user"], 0o600)
        done.append(item["path"])
    pending.unlink(missing_ok=True)
    return done


def leave_group(finding: Finding, quarantine: Quarantine) -> None:
    argument = json.loads(finding.argument)
    quarantine.note(finding, f"{argument['user']} was a member of {argument['group']}")
    _run(["gpasswd", "--delete", argument["user"], argument["group"]])


def lock_account(finding: Finding, quarantine: Quarantine) -> None:
    shell = pwd.getpwnam(finding.argument).pw_shell
    quarantine.note(finding, f"{finding.argument} had the shell {shell}; password locked, shell nologin")
    _run(["usermod", "--lock", "--shell", "/usr/sbin/nologin", finding.argument])


def remove_account(finding: Finding, quarantine: Quarantine) -> None:
    """A second root: its lines of passwd, shadow, group and gshadow are kept, then it is deleted
    (its home is left where it is)."""
    name = finding.argument
    kept = []
    for db in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
        try:
            with open(db) as f:
                kept += [f"{db}: {line.rstrip()}" for line in f if line.split(":", 1)[0] == name]
        except OSError:
            continue
    quarantine.note(finding, "deleted; its account lines: " + " | ".join(kept), secret=True)
    _run(["userdel", "--force", name])


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()[-300:]}")
