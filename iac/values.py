"""Value types and validators every option uses: each rule a type, checked before any host is
contacted; a message names the option and a valid example. The base of every section (Strict)."""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import shutil
import subprocess
import urllib.parse
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

HOSTNAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


FQDN_RE = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$")


SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+"
    r"( [^\x00-\x1f\x7f]*)?$"
)


USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


# DJANGO_SETTINGS_MODULE and the like: dotted Python identifiers
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# gunicorn's APP_MODULE: module path, optionally ":" and an attribute path (no call expressions)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"


WSGI_RE = re.compile(rf"^{_DOTTED}(:{_DOTTED})?$")


ENV_KEY_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# what an offline validation (no secrets file) puts in place of a missing secret; a field whose
# secret has a shape declares its own ("placeholder" in json_schema_extra)
OFFLINE_PLACEHOLDER = "(not provided: offline validation)"


OFFLINE_URL = "https://offline.invalid/not-provided"


CRYPT_RE = re.compile(r"\$[0-9a-z]{1,3}\$[./A-Za-z0-9$=,]{8,}")


# characters that end a value or start a new line/directive in the files values are written to
# control characters, and the Unicode line and paragraph separators (U+0085, U+2028, U+2029) that
# Python's splitlines (the engines' readers) ends a line at where systemd and a shell do not
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_F = TypeVar("_F", bound=Callable[..., Any])


def type_name(name: str, plural: str | None = None) -> Callable[[_F], _F]:
    """Name a validator's type for people: the options reference (docs/options.md, written by
    ``python -m cli.options_doc``) shows ``name`` as the option's type ("DNS name" for one,
    "list of DNS names" for a list; ``plural`` when adding an -s to the noun is wrong)."""

    def mark(func: _F) -> _F:
        func.type_name = name  # type: ignore[attr-defined]
        func.type_name_plural = plural  # type: ignore[attr-defined]
        return func

    return mark


def _check(pattern: re.Pattern[str], what: str, example: str):
    def validate(value: str) -> str:
        # fullmatch: a pattern's `$` also matches before a trailing newline
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what} (example: {example!r})")
        return value

    return AfterValidator(type_name(what)(validate))


@type_name("IANA time zone")
def _check_timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone (example: 'Etc/UTC', 'America/New_York')")
    return value


@type_name("IPv4 address")
def _check_ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address (example: '192.168.1.1')") from None
    return value


@type_name("IPv4 address with prefix length")
def _check_ipv4_interface(value: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address with prefix length (example: '192.168.1.230/24')") \
            from None
    if "/" not in value or iface.network.prefixlen in (0, 32):
        raise ValueError(f"{value!r} needs a prefix length between 1 and 31 (example: '192.168.1.230/24')")
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@type_name("nginx server name (DNS name, `*.` or `.` + DNS name, IP address, or `_`)")
def _check_server_name(value: str) -> str:
    """nginx server_name: `_` (any), a DNS name, `*.` or `.` before a DNS name, or an IP address."""
    bare = value[2:] if value.startswith("*.") else value[1:] if value.startswith(".") else value
    if value == "_" or _is_ip(value) or FQDN_RE.fullmatch(bare):
        return value
    raise ValueError(f"{value!r} is not a server name (a lower-case DNS name, '*.' + name, an IP address, or "
                     f"'_' for any name; example: 'pravoo.in')")


@type_name("Django allowed host (DNS name, `.` + DNS name, or IP address)")
def _check_allowed_host(value: str) -> str:
    """Django ALLOWED_HOSTS entry: a DNS name, `.` + name (the name and its subdomains), an IP."""
    if value == "*":
        raise ValueError("'*' lets any Host header through (Django's host-header protection off); list the "
                         "names users reach the app by (example: 'pravoo.in')")
    bare = value[1:] if value.startswith(".") else value
    if _is_ip(value) or FQDN_RE.fullmatch(bare):
        return value
    raise ValueError(f"{value!r} is not a host name Django can match (a lower-case DNS name, '.' + name for "
                     f"subdomains, or an IP address; example: 'pravoo.in')")


@type_name("git tag, branch or commit id", "git tags, branches or commit ids")
def _check_revision(value: str) -> str:
    """A git tag, branch or commit id (git's ref-name rules, no option-like or range syntax)."""
    ok = (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}", value) and ".." not in value and "//" not in value
          and not value.endswith((".", "/", ".lock")) and "/." not in value)
    if not ok:
        raise ValueError(f"{value!r} is not a git tag, branch or commit id (letters, digits, . _ / -; no '..'; "
                         f"example: 'v2', 'main' or a full commit id)")
    return value


# Directories of the system and of other services. An option that creates, chowns or fills a
# directory may not name one of these, nor a directory above one (``/etc``, ``/var/log``), nor a
# path inside the ones other services own (``/etc/ssh/...``, ``/var/lib/postgresql/...``).
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/usr/bin", "/usr/sbin", "/usr/lib",
    "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/share", "/var/lib", "/var/log",
    "/var/cache", "/var/tmp", "/var/spool", "/var/www", "/var/backups", "/var/mail", "/var/opt", "/var/run",
    "/srv/apps", "/srv/venvs", "/srv/releases", "/etc/iac", "/etc/iac/staged", "/var/lib/iac",
})


FOREIGN_TREES = (
    "/proc", "/sys", "/dev", "/run", "/boot", "/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin",
    "/usr/lib", "/usr/share", "/etc/ssh", "/etc/systemd", "/etc/nginx", "/etc/apt", "/etc/default", "/etc/pam.d",
    "/etc/sudoers.d", "/etc/cron.d", "/etc/ssl", "/etc/postgresql", "/etc/postgresql-common", "/etc/network",
    "/etc/security", "/etc/logrotate.d", "/etc/profile.d", "/etc/init.d", "/etc/letsencrypt", "/etc/iac/staged",
    "/var/lib/postgresql", "/var/lib/dpkg", "/var/lib/apt", "/var/lib/systemd", "/var/lib/nginx",
    "/var/log/nginx", "/var/log/journal", "/var/log/postgresql", "/var/log/apt", "/var/log/private",
    "/var/cache/apt", "/var/spool/cron",
)


@type_name("absolute path")
def _check_abs_path(value: str, example: str = "/mnt/pg_backups") -> str:
    """An absolute, normalised path without `..`, spaces or shell/unit metacharacters."""
    if not value.startswith("/") or value != posixpath.normpath(value) or "/../" in f"{value}/" \
            or value.startswith("//"):
        raise ValueError(f"{value!r} is not an absolute, normalised path (no '..', no '//', no trailing '/'; "
                         f"example: {example!r})")
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", value) or "/-" in value:
        raise ValueError(f"{value!r} may only contain letters, digits and _ . / - (no name may start with '-'; "
                         f"example: {example!r})")
    return value


def path_under(*roots: str, example: str, owned: bool = True):
    """An absolute normalised path strictly under one of ``roots``.

    ``owned``: the option creates, chowns or writes this path, so it may not be a system
    directory (SYSTEM_DIRS), a directory above one, or inside another service's tree."""

    def validate(value: str) -> str:
        _check_abs_path(value, example)
        if not any(value.startswith(r.rstrip("/") + "/") for r in roots):
            raise ValueError(f"{value!r} must be under {' or '.join(roots)} (example: {example!r})")
        if owned:
            above = sorted(d for d in SYSTEM_DIRS | set(FOREIGN_TREES) if d == value or d.startswith(value + "/"))
            if above:
                raise ValueError(f"{value!r} is a system directory or contains one ({above[0]}); the repo would "
                                 f"create, chown or fill it: use a directory of its own (example: {example!r})")
            inside = [t for t in FOREIGN_TREES if value.startswith(t + "/")]
            if inside:
                raise ValueError(f"{value!r} is inside {inside[0]}, which belongs to the system or another "
                                 f"service; use a directory of its own (example: {example!r})")
        return value

    under = ", ".join(roots[:-1]) + f" or {roots[-1]}" if len(roots) > 1 else roots[0]
    name = ("absolute path", "absolute paths") if roots == ("/",) else (f"path under {under}", f"paths under {under}")
    return AfterValidator(type_name(*name)(validate))


def _check_https_url(value: str, example: str, secret: bool = False) -> str:
    """An https:// URL with a host name and no user info, spaces or quotes. Plain http:// is
    accepted for an IP address only (a stand-in on a private network, as the sandbox's)."""
    shown = "the value" if secret else repr(value)
    parts = urllib.parse.urlsplit(value)
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError(f"{shown} has a bad port (example: {example!r})") from None
    host = parts.hostname or ""
    scheme_ok = parts.scheme == "https" or (parts.scheme == "http" and _is_ip(host))
    if (not scheme_ok or not (FQDN_RE.fullmatch(host) or _is_ip(host)) or "@" in parts.netloc
            or not re.fullmatch(r"[A-Za-z0-9._~:/?=&%+-]+", value) or re.search(r"/\.\.?(/|$|\?)", value)):
        raise ValueError(f"{shown} is not an https:// URL with a host name and no spaces, quotes or user "
                         f"info (example: {example!r})")
    return value


@type_name("PEM certificate bundle")
def _check_pem(value: str) -> str:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?", value)
    if not blocks or "".join(blocks).strip() != value.strip():
        raise ValueError("is not a PEM certificate bundle (only '-----BEGIN CERTIFICATE-----' blocks; example: "
                         "the contents of the CA's .pem file)")
    return value


@type_name("relative path inside the repository", "relative paths inside the repository")
def _check_repo_path(value: str) -> str:
    """A relative path inside a repository or release: no `..`, no leading `/` or `-`."""
    parts = value.split("/")
    if (not value or any(p in ("", ".", "..") for p in parts) or value.startswith("-")
            or not re.fullmatch(r"[A-Za-z0-9_.@+-]+(/[A-Za-z0-9_.@+-]+)*", value)):
        raise ValueError(f"{value!r} is not a relative path inside the repository (names of letters, digits "
                         f"and _ . @ + -, separated by '/', no '..'; example: 'scheduler/static/scheduler/dist')")
    return value


Hostname = Annotated[str, _check(HOSTNAME_RE, "host name (one DNS label)", "gts-server")]


Fqdn = Annotated[str, _check(FQDN_RE, "DNS name", "gts-server.lan")]


SshPublicKey = Annotated[str, _check(SSH_KEY_RE, "OpenSSH public key line", "ssh-ed25519 AAAAC3... ops@laptop")]


Username = Annotated[str, _check(USERNAME_RE, "user name", "gts")]


PackageName = Annotated[str, _check(PACKAGE_RE, "Debian package name", "git")]


TimeZone = Annotated[str, AfterValidator(_check_timezone)]


ModulePath = Annotated[str, _check(MODULE_RE, "Python module path", "broker_portal.settings")]


WsgiTarget = Annotated[str, _check(WSGI_RE, "WSGI application (module path, ':' and attribute)",
                                   "broker_portal.wsgi:application")]


EnvKey = Annotated[str, _check(ENV_KEY_RE, "environment variable name (A-Z, 0-9, _)", "FEATURE_X")]


Name = Annotated[str, _check(NAME_RE, "name (letters, digits, _ . -)", "django")]


IPv4 = Annotated[str, AfterValidator(_check_ipv4)]


IPv4Interface = Annotated[str, AfterValidator(_check_ipv4_interface)]


ServerName = Annotated[str, AfterValidator(_check_server_name)]


AllowedHost = Annotated[str, AfterValidator(_check_allowed_host)]


RepoPath = Annotated[str, AfterValidator(_check_repo_path)]


Revision = Annotated[str, AfterValidator(_check_revision)]


# a pip requirement the repo adds to an app's own: a distribution pinned to one version
PIP_PIN_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,99}[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
                        r"==[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")


# manage.py's subcommand, and each of its arguments: passed as argv (no shell), but through
# systemd, which expands $VAR and % specifiers: only characters none of them interprets
MANAGE_SUBCOMMAND_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


MANAGE_ARG_RE = re.compile(r"^[A-Za-z0-9_./:=@+,-]{1,200}$")


URL_PATH_RE = re.compile(r"^(?!.*//)(?!.*/\.\.?(/|$|\?))/[A-Za-z0-9._~/-]{0,200}(\?[A-Za-z0-9._~=&-]{0,200})?$")


@type_name("manage.py command (subcommand and arguments, no shell)")
def _check_manage_command(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("is empty; give manage.py's subcommand and its arguments (example: ['compress', '--force'])")
    if not MANAGE_SUBCOMMAND_RE.match(value[0]):
        raise ValueError(f"{value[0]!r} is not a manage.py subcommand name (lower-case letters, digits, _; "
                         "example: ['compress', '--force']); the command is manage.py's, not a shell's")
    for arg in value[1:]:
        if not MANAGE_ARG_RE.match(arg):
            raise ValueError(f"argument {arg!r} may only hold letters, digits and _ . / : = @ + , - (systemd "
                             "would expand $ and %, and no shell runs it; example: '--force')")
    return value


PipPin = Annotated[str, _check(PIP_PIN_RE, "pinned pip requirement (name==version)", "gunicorn==23.0.0")]


ManageCommand = Annotated[list[str], AfterValidator(_check_manage_command)]


UrlPath = Annotated[str, _check(URL_PATH_RE, "URL path (starting with '/')", "/healthz")]


def secret(min_length: int, kind: str) -> Any:
    """A ``SecretStr`` of at least ``min_length`` characters: a short secret can be guessed, and its
    redaction (whole values only, cli/drift.py ``redact``) would hide ordinary text where it
    appears. The error names ``kind`` and how to make a good one; never the value."""

    @type_name(f"secret (from the secrets file), at least {min_length} characters",
               f"secrets (from the secrets file), each at least {min_length} characters")
    def long_enough(value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value())
        if length < min_length:
            raise PydanticCustomError(
                "secret_too_short", "a {kind} of {length} characters is too short: give at least {min} "
                "(e.g. `openssl rand -base64 {bytes}`), then rotate it on the services that use it",
                {"kind": kind, "length": length, "min": min_length, "bytes": max(24, min_length)})
        return value

    return Annotated[SecretStr, AfterValidator(long_enough)]


def is_secret(annotation: Any) -> bool:
    """``SecretStr``, or one with constraints (``secret()``)."""
    return annotation is SecretStr or (get_origin(annotation) is Annotated and get_args(annotation)[0] is SecretStr)


def option_error(at: str, detail: str) -> PydanticCustomError:
    """A cross-field rule's error, placed at option ``at`` (relative to the model that checks
    it) so that the message names the full option path and the file that set it."""
    return PydanticCustomError("option", "{detail}", {"detail": detail, "at": at})


def _control_character(value: Any, multiline: bool) -> str | None:
    """Describe the first control character in a raw value (strings inside lists and maps too)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        allowed = "\n" if multiline else ""
        for i, ch in enumerate(value):
            if CONTROL_RE.match(ch) and ch not in allowed:
                return f"a control character ({ch!r}) at position {i}"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _control_character(key, False) or _control_character(item, multiline)
            if found:
                return found if "entry" in found else f"{found} (in entry {key!r})"
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _control_character(item, multiline)
            if found:
                return found
    return None


def _wants_number(annotation: Any) -> bool:
    """Whether an option's type is a number (int or float, optional or constrained), not a bool."""
    if annotation in (int, float):
        return True
    if annotation is bool:
        return False
    args = get_args(annotation)
    if args and getattr(annotation, "__metadata__", None) is not None:  # Annotated[int, ...]
        return _wants_number(args[0])
    return bool(args) and get_origin(annotation) not in (list, dict, tuple) and any(
        _wants_number(a) for a in args if a is not type(None)) and bool not in args


def _holds_sections(annotation: Any) -> bool:
    """Whether an option's type is, or holds, a section (checked by its own model)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_sections(arg) for arg in get_args(annotation))


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable once validated.

    No value (secrets included) may hold a newline, NUL or other control character: values are
    written into env files, units, nginx sites and commands, where one would start a new line
    (a new directive) or cut the value short. Fields marked ``multiline`` (a PEM bundle) may hold
    newlines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        # a before-validator of the model (not of each field: pydantic forbids those on the
        # discriminator `engine`); sub-models check their own fields, so the error names the leaf
        if not isinstance(data, Mapping):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or _holds_sections(field.annotation):
                continue
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            found = _control_character(value, bool(extra.get("multiline")))
            if found:
                raise option_error(name, f"contains {found}; values are written into files, units and commands "
                                   "where it would start a new line or end the value: remove it")
            items_numbers = get_origin(field.annotation) is list and _wants_number(get_args(field.annotation)[0])
            if (isinstance(value, bool) and _wants_number(field.annotation)) or (
                    items_numbers and isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
                shown = value if isinstance(value, bool) else next(v for v in value if isinstance(v, bool))
                raise option_error(name, f"holds {shown!r}, a yes/no value where a number is expected (Python "
                                   "reads True as 1): write the number")
            if isinstance(value, (list, tuple)):
                seen: set = set()
                for item in value:
                    if isinstance(item, (str, int)) and item in seen:
                        raise option_error(name, f"lists {item!r} twice: remove the second one")
                    if isinstance(item, (str, int)):
                        seen.add(item)
        return data


HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$")


IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def parse_git_url(value: str) -> tuple[str | None, str, int | None, str]:
    """(user, host, port, path) of an SSH git URL: ``ssh://[user@]host[:port]/path`` or the scp-like
    ``user@host:path``. Raises ValueError naming what is wrong: the URL reaches a shell, an SSH
    command line and a settings file, so it is parsed, not patterned."""
    example = "example: 'git@github.com:owner/repo.git' or 'ssh://git@git.example.com:2222/owner/repo.git'"
    if value.startswith("ssh://"):
        parts = urllib.parse.urlsplit(value)
        if parts.query or parts.fragment or parts.password is not None or "@" in (parts.path or ""):
            raise ValueError(f"{value!r}: an SSH git URL has no password, query or fragment ({example})")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{value!r}: the port is not a number from 1 to 65535 ({example})") from None
        user, host, path = parts.username, parts.hostname or "", parts.path
    elif "://" in value:
        raise ValueError(f"{value!r}: only SSH URLs are fetched (with the app's deploy key); {example}")
    else:
        m = re.fullmatch(r"([^@:/]+)@([^:/]+):(.+)", value)
        if not m:
            raise ValueError(f"{value!r} is not an SSH git URL ({example})")
        user, host, port, path = m.group(1), m.group(2), None, m.group(3)
    if user is not None and not USERNAME_RE.fullmatch(user):
        raise ValueError(f"{value!r}: the user {user!r} is not a valid login name ({example})")
    if not (FQDN_RE.fullmatch(host) or _is_ip(host)):
        raise ValueError(f"{value!r}: {host!r} is not a host name ({example})")
    if port == 0:
        raise ValueError(f"{value!r}: port 0 ({example})")
    rel = path.lstrip("/")
    if not rel or path.startswith("-") or any(p in ("", ".", "..") for p in rel.split("/")) \
            or not re.fullmatch(r"[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*", rel) or rel.startswith("-"):
        raise ValueError(f"{value!r}: the repository path {path!r} may hold letters, digits and _ . ~ + - "
                         f"between '/', no '..' and no leading '-' ({example})")
    return user, host, port, path


@type_name("SSH git URL")
def _check_git_url(value: str) -> str:
    parse_git_url(value)
    return value


GitUrl = Annotated[str, AfterValidator(_check_git_url)]


HostKey = Annotated[str, _check(HOST_KEY_RE, "SSH host key (type and base64)", "ssh-ed25519 AAAAC3Nza...")]


Ident = Annotated[str, _check(IDENT_RE, "lower-case identifier", "rental_scheduler")]


AnyFile = Annotated[str, path_under("/", example="/root/Chips_dashboard/chip_dashboard/db.sqlite3", owned=False)]


UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


UnitName = Annotated[str, _check(UNIT_NAME_RE, "systemd unit name (without .service)", "pg-backup-gts")]


FS_UUID_RE = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                        r"|[0-9A-F]{4}-[0-9A-F]{4})$")


FsUuid = Annotated[str, _check(FS_UUID_RE, "filesystem UUID (as `blkid` prints it)",
                               "3f0a3c2e-5b7d-4e0f-9a51-0c8e6b9d2a11")]


RESTIC_S3_RE = re.compile(r"^s3:https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/(?!\.{1,2}(/|$))[A-Za-z0-9._-]+)+$")


ResticRepository = Annotated[str, _check(
    RESTIC_S3_RE, "restic S3 repository",
    "s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres")]


@functools.lru_cache(maxsize=512)
def _calendar_complaint(value: str) -> str | None:
    """systemd-analyze's complaint about an OnCalendar= expression, None if it accepts it (or is
    not on this machine). Cached: a run validates the same few expressions many times."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return None
    proc = subprocess.run([analyze, "calendar", value], capture_output=True, text=True, check=False, timeout=10)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["rejected"])[-1]


@type_name("systemd calendar expression (OnCalendar=)")
def _check_calendar(value: str) -> str:
    """An OnCalendar= expression, checked by systemd's own parser when it is on this machine."""
    if not value.strip() or "\n" in value or "\x00" in value or ";" in value:
        raise ValueError(f"{value!r} is not a systemd calendar expression (example: 'hourly', '*-*-* 02:30:00')")
    why = _calendar_complaint(value)
    if why is not None:
        raise ValueError(f"{value!r} is not a systemd calendar expression ({why}; check with "
                         f"`systemd-analyze calendar`; example: '*-*-* 02:30:00')")
    return value


AbsPath = Annotated[str, AfterValidator(_check_abs_path)]


Script = Annotated[str, path_under("/usr/local/sbin", "/usr/local/bin", example="/usr/local/sbin/backup.sh")]


EtcFile = Annotated[str, path_under("/etc", example="/etc/gts/backup/restic.env")]


OnCalendar = Annotated[str, AfterValidator(_check_calendar)]


Days = Annotated[int, Field(ge=1, le=3660)]


Keep = Annotated[int, Field(ge=0, le=10000)]


Port = Annotated[int, Field(ge=1, le=65535)]
