"""Which facts a fact record may name, and what each of their arguments may be: the one place.

A fact record (``.cache/facts/*.json``, iac/pyinfra_ext/fact_batch.py) is read back at the start of a run and
each entry's command runs on the host, as root on production. In CI the records come back from an
actions cache that other branches can write, so a record is hostile input: an entry could name
any class by import path (``pyinfra.facts.server:Command`` with ``command="..."``) or give one of
our own facts an argument that its command line does not quote (``GitRemoteCommit``'s ``user``).

So an entry is used only when:

* its class is one of ``ALLOWED_FACTS`` (the facts this repo asks for, its own in operations/ and
  the pyinfra facts its operations use), checked as a string before anything is imported;
* each argument is one the class declares here, of the declared kind: a path or a name of a safe
  shape, a bool, an int in range, None; a list only where declared (anything else is refused);
* its executor settings (how the command runs: sudo, its user, the shell) are ones of
  ``EXECUTOR``, each of its kind; an environment, stdin or a password never.

``refusal()`` says why an entry is refused (None when it may run). fact_batch reads records with
it and writes only entries that pass it, so what a run records, the next run accepts.
tests/unit/test_fact_policy.py checks the table against the classes: every fact class defined in
operations/ is here (or said why not), and each entry's arguments are the class's ``command()``
parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# how a run says that a record held something it did not use (iac/pyinfra_ext/fact_batch.py logs it; the
# drift gate, which keeps pyinfra's output to itself, passes such lines on: cli/drift.py)
WARNING_PREFIX = "fact record "


@dataclass(frozen=True)
class Kind:
    """What one argument may be."""

    name: str
    accepts: Callable[[Any], bool]


def _shaped(name: str, pattern: str, max_len: int = 512) -> Kind:
    regex = re.compile(pattern)
    return Kind(name, lambda v: isinstance(v, str) and len(v) <= max_len and regex.fullmatch(v) is not None)


def optional(kind: Kind) -> Kind:
    return Kind(f"{kind.name} or null", lambda v: v is None or kind.accepts(v))


def list_of(kind: Kind, max_items: int = 512) -> Kind:
    return Kind(f"list of {kind.name}",
                lambda v: isinstance(v, list) and 0 < len(v) <= max_items and all(kind.accepts(i) for i in v))


def int_in(low: int, high: int) -> Kind:
    return Kind(f"int {low}..{high}",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high)


def one_of(*values: Any) -> Kind:
    return Kind(" or ".join(repr(v) for v in values),
                lambda v: any(type(v) is type(w) and v == w for w in values))


_SAFE_PATH = _shaped("path", r"/[A-Za-z0-9._/@+,:=-]*", 4096)
# an absolute path the shell reads as itself (no space, quote, $, `, ; or newline), no ".." in it
PATH = Kind("path", lambda v: _SAFE_PATH.accepts(v) and ".." not in v.split("/"))
# a user, role, database, interface or program name; never starting with "-" (not an option)
NAME = _shaped("name", r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*", 128)
HOSTNAME = _shaped("host name", r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", 253)
URL_PATH = _shaped("URL path", r"/[A-Za-z0-9._~/%?&=+,:@-]*", 2048)
# git@host:owner/repo.git or ssh://[user@]host[:port]/path (operations/host.py's git_url)
GIT_URL = _shaped("git URL", r"(?:ssh://)?[A-Za-z0-9_][A-Za-z0-9_.-]*@?[A-Za-z0-9_.-]*(?::[0-9]+)?[:/][A-Za-z0-9_./~+-]+",
                  1024)
REVISION = _shaped("revision", r"[A-Za-z0-9_][A-Za-z0-9_./+-]*", 255)
UNIT = _shaped("systemd unit", r"[A-Za-z0-9_][A-Za-z0-9_.@:-]*", 256)
# text that pyinfra's command always quotes (FindInFile's pattern): printable, one line
TEXT = _shaped("one-line text", r"[^\x00-\x08\x0a-\x1f\x7f]*", 4096)
BOOL = Kind("bool", lambda v: isinstance(v, bool))
NONE = one_of(None)
FALSE = one_of(False)
PORT = int_in(1, 65535)
# (database, role) pairs: PostgresState's questions, each name a psql variable there
NAME_PAIRS = Kind("list of [name, name]", lambda v: isinstance(v, list) and len(v) <= 512 and all(
    isinstance(p, list) and len(p) == 2 and all(NAME.accepts(n) for n in p) for p in v))

_FILE = {"path": PATH}
_UNITS = list_of(UNIT)
_SYSTEMD = {"user_mode": FALSE, "machine": NONE, "user_name": NONE,  # the last two are not quoted by pyinfra
            "services": Kind("systemd unit or list of them", lambda v: UNIT.accepts(v) or _UNITS.accepts(v))}

# fact class ("module:Class") -> {argument: kind}
ALLOWED_FACTS: dict[str, dict[str, Kind]] = {
    # pyinfra's facts that this repo's operations and pyinfra's operations it calls ask for
    **{f"pyinfra.facts.files:{name}": _FILE for name in (
        "File", "Directory", "Link", "Socket", "FileContents", "Md5File", "Sha1File", "Sha256File", "Sha384File")},
    "pyinfra.facts.files:FindInFile": {"path": PATH, "pattern": TEXT, "interpolate_variables": FALSE,
                                       "extended_regex": BOOL},
    **{f"pyinfra.facts.server:{name}": {} for name in (
        "Users", "Groups", "Os", "OsVersion", "LinuxDistribution", "Hostname", "Date", "TmpDir")},
    "pyinfra.facts.server:Which": {"command": NAME},
    "pyinfra.facts.server:AuthorizedKeys": {"user": NAME, "path": optional(PATH)},
    "pyinfra.facts.deb:DebPackages": {},
    "pyinfra.facts.apt:AptSources": {},
    "pyinfra.facts.systemd:SystemdStatus": _SYSTEMD,
    "pyinfra.facts.systemd:SystemdEnabled": _SYSTEMD,
    # this repo's own
    "operations.app.facts:JsonFile": _FILE,
    "operations.app.facts:DeployedRelease": _FILE,
    "operations.app.facts:ReleaseDamage": {"engine": PATH, "app": NAME},
    "operations.app.facts:GitRemoteCommit": {"url": GIT_URL, "revision": REVISION, "user": NAME, "key": PATH,
                                         "known_hosts": PATH},
    "operations.app.facts:TlsCertificate": {"domain": HOSTNAME},
    "operations.app.facts:HttpStatus": {"url": URL_PATH, "host_header": HOSTNAME, "port": PORT, "tls": BOOL},
    "operations.admin.deploy:ShadowHashDigest": {"user": NAME},
    "operations.backups.deploy:MountPoint": _FILE,
    "operations.backups.deploy:ResticRepositoryState": {"env_file": PATH},
    "operations.exposure.confirmed:ExposureState": {},
    "iac.guarded:Sha256Files": {"paths": list_of(PATH)},
    "operations.network.deploy:InterfaceState": {"interface": NAME},
    "operations.postgres.cluster:PostgresState": {"connect": NAME_PAIRS, "schema": NAME_PAIRS},
    "operations.app.identity:NotOwnedBy": {"path": PATH, "user": NAME},
    # the baseline engine's settings: JSON its command line quotes whole, checked key by key by the engine
    "operations.baseline.deploy:BaselineFindings": {"settings": _shaped("settings JSON", r"\{[^\x00-\x1f\x7f]*\}",
                                                                         1 << 20)},
}

# fact classes defined in this repo that are never recorded, and why (tests/unit/test_fact_policy.py)
NEVER_RECORDED = {
    "iac.guarded:EnvFileDigests": "its salt is a secret (fact_calls.SECRET_ARGUMENTS)",
}

# how a fact's command runs (pyinfra's connector arguments a call carries); none of the others
EXECUTOR: dict[str, Kind] = {
    "_sudo": BOOL, "_sudo_user": NAME, "_use_sudo_login": BOOL, "_preserve_sudo_env": BOOL,
    "_su_user": NAME, "_use_su_login": BOOL, "_preserve_su_env": BOOL,
    "_doas": BOOL, "_doas_user": NAME,
    "_shell_executable": one_of("sh", "bash"),
    "_chdir": PATH, "_temp_dir": PATH,
    "_success_exit_codes": list_of(int_in(0, 255), 256),
    "_timeout": int_in(1, 86400), "_get_pty": BOOL, "_retries": int_in(0, 100),
    "_retry_delay": Kind("number 0..3600", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                         and 0 <= v <= 3600),
}


def refusal(fact: Any, kwargs: Any, executor: Any) -> str | None:
    """Why a recorded call may not run (one short phrase), or None when it may."""
    schema = ALLOWED_FACTS.get(fact) if isinstance(fact, str) else None
    if schema is None:
        return "not a fact class of this repository"
    for what, given, allowed in (("argument", kwargs, schema), ("executor setting", executor, EXECUTOR)):
        if not isinstance(given, dict):
            return f"its {what}s are not a mapping"
        for name, value in given.items():
            kind = allowed.get(name)
            if kind is None:
                return f"unknown {what} {name!r}"
            if not kind.accepts(value):
                return f"{what} {name!r} is not a {kind.name}"
    return None
