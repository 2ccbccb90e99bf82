"""Operations for files that must not be handled like ordinary files.

* ``secret_file``: contents that hold secrets. pyinfra's files.put/template print old and new
  contents under ``--diff``; this compares checksums only and never prints contents.
* ``validated_file``: configuration that must be checked before it goes live (nginx, systemd
  units). The rendered file is kept at a staging path (an ordinary, drift-visible file); the
  live file is replaced only when it differs, and only if the validator accepts it, otherwise
  the previous live file is put back and the operation fails. The reload runs only after a
  successful replacement. Because the decision comes from comparing the two files on the host
  (a fact), a reload lost to an interrupted run is redone by the next run.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.facts.files import File, Sha256File

from iac.declared import declares
from iac.pyinfra_ext.sudo_staging import upload


def units_verified(units: str = "{paths}") -> str:
    """A ``validate`` command for systemd units: ``systemd-analyze verify`` of ``units`` (default:
    the changed paths) must say nothing. Any complaint refuses the set, since verify exits 0 on some
    (an unknown setting); what it said is printed."""
    return f'out=$(systemd-analyze verify {units} 2>&1); printf "%s" "$out"; [ -z "$out" ]'


def env_digests(text: str, salt: str) -> dict[str, str]:
    """``NAME=value`` lines of an env file -> salted sha256 of each value (comments skipped): what
    differs can be named by variable without showing any value. Same rule as EnvFileDigests."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        out[name] = hashlib.sha256(f"{salt}{value}".encode()).hexdigest()
    return out


def env_differences(current: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """Variable names that changed, appeared or went away (never their values)."""
    changed = sorted(n for n in wanted if n in current and current[n] != wanted[n])
    added = sorted(n for n in wanted if n not in current)
    removed = sorted(n for n in current if n not in wanted)
    return ([f"{n} changed" for n in changed] + [f"{n} to add" for n in added]
            + [f"{n} to remove" for n in removed])


class EnvFileDigests(FactBase):
    """Salted sha256 per variable of an env file (``NAME=value`` lines), never the values."""

    def command(self, path: str, salt: str) -> str:
        return (f"test -f {shlex.quote(path)} || exit 0; "
                f"while IFS= read -r line || [ -n \"$line\" ]; do case \"$line\" in ''|'#'*) continue;; *=*) ;; "
                "*) continue;; esac; "
                f"printf '%s %s\\n' \"${{line%%=*}}\" \"$(printf '%s%s' {shlex.quote(salt)} \"${{line#*=}}\" "
                f"| sha256sum | cut -d' ' -f1)\"; done < {shlex.quote(path)}")

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in output if " " in line)


@declares("dest")
@operation()
def secret_file(dest: str, content: str, user: str = "root", group: str = "root", mode: str = "600",
                env: bool = False):
    """
    Ensure a file holding secrets has this content, owner and mode, without printing it.

    + dest: path on the host
    + content: the full contents (never logged, never diffed)
    + user: owner
    + group: group
    + mode: octal mode, e.g. ``"640"``
    + env: the file is ``NAME=value`` lines: a difference names the variables (never values)

    **Example:**

    .. code:: python

        secret_file(name="App env", dest="/etc/gts/apps/x.env", content=text, group="x", mode="640")
    """
    data = content.encode()
    want = hashlib.sha256(data).hexdigest()
    current = host.get_fact(Sha256File, path=dest)
    info = host.get_fact(File, path=dest)
    q = shlex.quote(dest)
    if current != want:
        # what differs is said without the content: it holds secrets
        if current and env:
            salt = secrets.token_hex(8)
            named = env_differences(host.get_fact(EnvFileDigests, path=dest, salt=salt), env_digests(content, salt))
            host.noop(f"~ update {dest}: {', '.join(named) or 'layout changed'} (values not shown)")
        else:
            host.noop(f"~ update {dest}: content differs from the declared one (not shown: it holds secrets)"
                      if current else f"+ create {dest} (content not shown: it holds secrets)")
        # upload to a 0600 temporary file first: the secret is never readable by others (through sudo,
        # pyinfra stages it before that in the login's private directory: iac/pyinfra_ext/sudo_staging.py)
        tmp = f"{dest}.iac-new"
        yield StringCommand(f"install -m 600 /dev/null {shlex.quote(tmp)}")
        yield upload(data, tmp)
        yield StringCommand(f"chown {user}:{group} {shlex.quote(tmp)} && chmod {mode} {shlex.quote(tmp)} "
                            f"&& mv -f {shlex.quote(tmp)} {q}")
        return
    if info and (info.get("user") != user or info.get("group") != group):
        host.noop(f"~ update {dest}: owner {info.get('user')}:{info.get('group')}, declared {user}:{group}")
        yield StringCommand(f"chown {user}:{group} {q}")
    if info and f"{info.get('mode')}" != mode.lstrip("0"):
        host.noop(f"~ update {dest}: mode {info.get('mode')}, declared {mode}")
        yield StringCommand(f"chmod {mode} {q}")


def unless_ok(check: str, otherwise: str) -> str:
    """Shell that runs ``check`` and, when it fails, prints what it printed (stdout and stderr) to
    stderr and runs ``otherwise``.

    The output is held in a shell variable, never in a file: a fixed name in /tmp, written as root,
    lets any local account plant a link there (root then truncates its target) or a file root
    cannot replace (every validated change then fails).

    Example: ``unless_ok("nginx -t", "echo 'REFUSED' >&2; exit 1")``"""
    return f"if ! iac_out=$( ( {check} ) 2>&1 ); then printf '%s\\n' \"$iac_out\" >&2; {otherwise}; fi"


@declares("staged", "dest")
@operation()
def validated_file(staged: str, dest: str, validate: str, activate: str):
    """
    Make ``dest`` equal to the already-rendered ``staged`` file if ``validate`` accepts it.

    + staged: path of the rendered file on the host
    + dest: live path
    + validate: shell command that must succeed with the new file in place (``{path}`` is
      replaced with ``dest``)
    + activate: shell command run after a successful replacement (a reload)

    **Example:**

    .. code:: python

        validated_file(
            name="nginx site django",
            staged="/etc/iac/staged/etc/nginx/sites-available/django",
            dest="/etc/nginx/sites-available/django",
            validate="nginx -t",
            activate="systemctl reload nginx",
        )
    """
    staged_sum = host.get_fact(Sha256File, path=staged)
    live_sum = host.get_fact(Sha256File, path=dest)
    if staged_sum is not None and staged_sum == live_sum:
        return
    s, d = shlex.quote(staged), shlex.quote(dest)
    prev = shlex.quote(f"{dest}.iac-prev")
    check = validate.replace("{path}", d)
    yield StringCommand(
        f"if [ -e {d} ]; then cp -a {d} {prev}; else rm -f {prev}; fi; "
        f"install -m 644 {s} {d}; "
        + unless_ok(check, f"if [ -e {prev} ]; then mv -f {prev} {d}; else rm -f {d}; fi; "
                    f"echo 'REFUSED: {dest} failed validation; the previous file is back in place' >&2; exit 1")
        + f"; rm -f {prev}; {activate}"
    )


class Sha256Files(FactBase):
    """sha256 of several files in one command: path -> digest (absent files are left out)."""

    def command(self, paths: tuple[str, ...]) -> str:
        return "sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null || true"

    @staticmethod
    def default() -> dict[str, str]:
        return {}  # none of the files exists (the command printed nothing)

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            parts = line.split(maxsplit=1)
            if len(parts) == 2 and len(parts[0]) == 64:
                found[parts[1].strip()] = parts[0]
        return found


def differing_files(files: dict[str, str]) -> list[str]:
    """The paths whose live contents differ from ``files`` (read with one command, cached)."""
    live = host.get_fact(Sha256Files, paths=tuple(sorted(files))) or {}
    return [p for p, text in sorted(files.items()) if live.get(p) != hashlib.sha256(text.encode()).hexdigest()]


@declares("files")
@operation()
def validated_files(files: dict[str, str], validate: str, activate: str, staging: str):
    """
    Make a set of files live together if ``validate`` accepts them together, or change none.

    The set is compared with one command; only differing files are uploaded (to ``staging``),
    put live, checked together, and put back as they were if the check fails.

    + files: live path -> contents (no secrets: they are uploaded as ordinary files)
    + validate: shell command run with the new files in place; ``{paths}`` is replaced with the
      changed live paths
    + activate: shell command run after a successful replacement (a reload)
    + staging: directory on the host for the uploads

    **Example:**

    .. code:: python

        validated_files(name="Backup units", files={"/etc/systemd/system/x.timer": text},
                        validate="systemd-analyze verify {paths}", activate="systemctl daemon-reload",
                        staging="/etc/iac/staged")
    """
    changed = differing_files(files)
    if not changed:
        return
    yield StringCommand(f"install -d -m 755 {shlex.quote(staging)}")
    staged = {p: f"{staging}/{p.strip('/').replace('/', '__')}" for p in changed}
    for path in changed:
        yield upload(files[path].encode(), staged[path])
    put, revert, drop = [], [], []
    for path in changed:
        d, prev = shlex.quote(path), shlex.quote(f"{path}.iac-prev")
        put.append(f"if [ -e {d} ]; then cp -a {d} {prev}; else rm -f {prev}; fi; "
                   f"install -m 644 {shlex.quote(staged[path])} {d}")
        revert.append(f"if [ -e {prev} ]; then mv -f {prev} {d}; else rm -f {d}; fi")
        drop.append(f"rm -f {prev}")
    check = validate.replace("{paths}", " ".join(shlex.quote(p) for p in changed))
    yield StringCommand(
        f"{'; '.join(put)}; "
        + unless_ok(check, f"{'; '.join(revert)}; "
                    f"echo 'REFUSED: {' '.join(changed)} failed validation; the previous files are back' >&2; exit 1")
        + f"; {'; '.join(drop)}; {activate}"
    )


@declares("files")
@operation()
def files_present(files: dict[str, str], executable: tuple[str, ...] = ()):
    """
    Ensure root's files hold ``files``' contents (mode 644, 755 for ``executable``), compared
    with one command; only the files that differ are uploaded.

    + files: path -> contents (no secrets: uploaded as ordinary files)
    + executable: the paths among them that are run directly

    **Example:**

    .. code:: python

        files_present(name="Host engines", files={"/usr/local/lib/iac/iac_release.py": text},
                      executable=("/usr/local/lib/iac/iac_release.py",))
    """
    changed = differing_files(files)
    if not changed:
        return
    host.noop("differs: " + ", ".join(changed))
    yield StringCommand("install", "-d", "-m", "755", *sorted({p.rsplit("/", 1)[0] for p in changed}))
    for path in changed:
        yield upload(files[path].encode(), path)
        yield StringCommand("chown", "root:root", path)
        yield StringCommand("chmod", "755" if path in executable else "644", path)
