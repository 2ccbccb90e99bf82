"""The one typed model of everything a host declares.

Every option is typed, described and exemplified here; a default lives here and nowhere else.
``group_data/`` holds values only. Operations read a validated ``HostConfig`` (see
``stack.load.host_config``), never raw ``host.data``.

Secrets are ``SecretStr`` fields: they print as ``**********``, are never taken from
``group_data/`` and reach a run only through the secrets source (``stack.secrets``).
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import shlex
import shutil
import subprocess
import urllib.parse
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
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
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _check(pattern: re.Pattern[str], what: str, example: str):
    def validate(value: str) -> str:
        # fullmatch: a pattern's `$` also matches before a trailing newline
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what} (example: {example!r})")
        return value

    return AfterValidator(validate)


def _check_timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone (example: 'Etc/UTC', 'America/New_York')")
    return value


def _check_ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address (example: '192.168.1.1')") from None
    return value


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


def _check_server_name(value: str) -> str:
    """nginx server_name: `_` (any), a DNS name, `*.` or `.` before a DNS name, or an IP address."""
    bare = value[2:] if value.startswith("*.") else value[1:] if value.startswith(".") else value
    if value == "_" or _is_ip(value) or FQDN_RE.fullmatch(bare):
        return value
    raise ValueError(f"{value!r} is not a server name (a lower-case DNS name, '*.' + name, an IP address, or "
                     f"'_' for any name; example: 'pravoo.in')")


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

    return AfterValidator(validate)


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


def _check_pem(value: str) -> str:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?", value)
    if not blocks or "".join(blocks).strip() != value.strip():
        raise ValueError("is not a PEM certificate bundle (only '-----BEGIN CERTIFICATE-----' blocks; example: "
                         "the contents of the CA's .pem file)")
    return value


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
        return data


class HostSection(Strict):
    hostname: Hostname = Field(
        description="The host's name, written to /etc/hostname and applied live.",
        examples=["gts-server"],
    )
    aliases: list[Fqdn] = Field(
        default=[],
        description="Extra names for the host in /etc/hosts (for example its LAN name).",
        examples=[["gts-server.lan"]],
    )
    timezone: TimeZone = Field(
        default="Etc/UTC",
        description="IANA time zone of the host (/etc/localtime, /etc/timezone).",
        examples=["Etc/UTC", "America/New_York"],
    )


DEFAULT_BASE_PACKAGES = [
    "ca-certificates", "curl", "git", "less", "openssh-server", "rsync", "sudo", "tzdata",
]


class BaseSection(Strict):
    packages: list[PackageName] = Field(
        default=DEFAULT_BASE_PACKAGES,
        description="Debian packages every host has; services add their own packages.",
        examples=[DEFAULT_BASE_PACKAGES],
    )
    extra_packages: list[PackageName] = Field(
        default=[],
        description="Further packages for this host or group, on top of `packages`.",
        examples=[["htop", "tmux"]],
    )
    apt_cache_hours: int = Field(
        default=24, ge=1, le=24 * 14,
        description="apt-get update runs only when the package lists are older than this.",
        examples=[24],
    )


class AdminSection(Strict):
    name: Username = Field(
        description="Login of the human administrator (a real account with a home directory).",
        examples=["gts"],
    )
    ssh_authorized_keys: list[SshPublicKey] = Field(
        default=[],
        description=(
            "Public keys allowed to log in as the admin. Keys are added, never removed: an empty "
            "list leaves existing keys alone (how the production hosts are adopted)."
        ),
        examples=[["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"]],
    )
    sudo: bool = Field(
        default=True,
        description="Member of group sudo (password required: the account has no NOPASSWD rule).",
        examples=[True],
    )
    groups: list[Username] = Field(
        default=[],
        description="Further supplementary groups, created by the services that own them.",
        examples=[["postgres"]],
    )
    shell: Annotated[str, path_under("/bin", "/usr/bin", example="/bin/bash", owned=False)] = Field(
        default="/bin/bash", description="Login shell (under /bin or /usr/bin).", examples=["/bin/bash"])
    password_hash: SecretStr | None = Field(
        default=None,
        description=(
            "SECRET. crypt(3) hash of the admin's password (for sudo), from the secrets file. "
            "Unset leaves the current password alone (how existing hosts are adopted)."
        ),
        examples=["$y$j9T$...(mkpasswd -m yescrypt)"], json_schema_extra={"canary": "crypt"},
    )

    @field_validator("password_hash")
    @classmethod
    def _crypt_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not CRYPT_RE.fullmatch(value.get_secret_value()):
            raise ValueError("is not a crypt(3) hash (it must start with '$' and the method, as `mkpasswd -m "
                             "yescrypt` prints it; a plain password is refused; example: '$y$j9T$...')")
        return value


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


def _check_git_url(value: str) -> str:
    parse_git_url(value)
    return value


GitUrl = Annotated[str, AfterValidator(_check_git_url)]
HostKey = Annotated[str, _check(HOST_KEY_RE, "SSH host key (type and base64)", "ssh-ed25519 AAAAC3Nza...")]
Ident = Annotated[str, _check(IDENT_RE, "lower-case identifier", "rental_scheduler")]

# github.com's published ed25519 host key (docs.github.com, "GitHub's SSH key fingerprints")
GITHUB_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class GitSource(Strict):
    url: GitUrl = Field(
        description="Repository, fetched over SSH with the app's deploy key.",
        examples=["git@github.com:RockSolid-Data/gts-rental-scheduler.git"],
    )
    host_key: HostKey = Field(
        default=GITHUB_HOST_KEY,
        description="The git server's SSH host key, pinned in the app user's known_hosts.",
        examples=[GITHUB_HOST_KEY],
    )
    revision: Revision = Field(
        description="What to deploy: a tag, a branch or a full commit id.",
        examples=["v2", "main", "4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e"],
    )


def _check_sqlite_path(value: str) -> str:
    _check_abs_path(value, "/var/lib/chip_dashboard/db.sqlite3")
    parts = value.split("/")
    if len(parts) != 5 or parts[1:3] != ["var", "lib"]:
        raise ValueError(f"{value!r} must be /var/lib/<dir>/<file>: <dir> becomes the unit's StateDirectory "
                         "(example: '/var/lib/chip_dashboard/db.sqlite3')")
    if f"/var/lib/{parts[3]}" in SYSTEM_DIRS or f"/var/lib/{parts[3]}" in FOREIGN_TREES:
        raise ValueError(f"{value!r}: /var/lib/{parts[3]} belongs to the system or another service "
                         "(example: '/var/lib/chip_dashboard/db.sqlite3')")
    return value


AnyFile = Annotated[str, path_under("/", example="/root/Chips_dashboard/chip_dashboard/db.sqlite3", owned=False)]


class SqliteDatabase(Strict):
    engine: Literal["sqlite"] = Field(description="SQLite file (USE_SQLITE=1).", examples=["sqlite"])
    path: Annotated[str, AfterValidator(_check_sqlite_path)] = Field(
        description="The database file, /var/lib/<dir>/<file> (<dir> is the unit's StateDirectory, owned by "
                    "the app user).",
        examples=["/var/lib/chip_dashboard/db.sqlite3"],
    )
    adopt_from: AnyFile | None = Field(
        default=None,
        description=(
            "A database file of a hand-built install to take over on the first deploy: when `path` does "
            "not exist yet, the old file is backed up and copied there (the old file is left as it was)."
        ),
        examples=["/root/Chips_dashboard/chip_dashboard/db.sqlite3"],
    )


class PostgresDatabase(Strict):
    engine: Literal["postgresql"] = Field(description="A local PostgreSQL database.", examples=["postgresql"])
    name: Ident = Field(description="Database name.", examples=["gts_scheduler"])
    role: Ident = Field(
        description="Role the app connects as (peer authentication over the unix socket, no password).",
        examples=["rental_scheduler_user"],
    )
    import_sqlite_from: AnyFile | None = Field(
        default=None,
        description=(
            "Moving from SQLite: on the first deploy that finds this database without Django's tables, "
            "the app is stopped, this SQLite file is backed up, brought to the release's migrations and its "
            "data moved in with dumpdata/loaddata. The file is kept."
        ),
        examples=["/var/lib/chip_dashboard/db.sqlite3"],
    )


Database = Annotated[SqliteDatabase | PostgresDatabase, Field(discriminator="engine")]


class DiscordAlerts(Strict):
    webhook_url: SecretStr = Field(
        description="SECRET. Discord webhook URL (DISCORD_WEBHOOK_URL), from the secrets file.",
        examples=["https://discord.com/api/webhooks/<id>/<token>"], json_schema_extra={"placeholder": OFFLINE_URL},
    )
    enabled: bool = Field(default=True, description="DISCORD_ALERTS_ENABLED", examples=[True])
    dedup_seconds: int = Field(default=300, ge=0, description="DISCORD_ALERTS_DEDUP_SECONDS", examples=[300])
    timeout_seconds: int = Field(default=2, ge=1, le=30, description="DISCORD_ALERTS_TIMEOUT_SECONDS",
                                 examples=[2])
    environment: Annotated[str, _check(re.compile(r"[A-Za-z0-9_.-]{1,32}"), "environment label", "prod")] = Field(
        default="prod", description="DISCORD_ALERTS_ENV", examples=["prod"])

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        _check_https_url(value.get_secret_value(), "https://discord.com/api/webhooks/<id>/<token>", secret=True)
        return value



class FrontendBuild(Strict):
    """`npm ci` + `npm run build` as the app user, for a release whose build inputs changed."""

    inputs: list[RepoPath] = Field(
        min_length=1,
        description="Paths in the repository the build reads (package files, CSS, templates, the "
                    "tailwind or build config). A release whose inputs are the same, file for file, "
                    "as an already built one reuses that build's outputs instead of running npm. "
                    "package.json and package-lock.json are always inputs.",
        examples=[["tailwind.config.js", "frontend", "scheduler/templates"]],
    )
    outputs: list[RepoPath] = Field(
        min_length=1,
        description="Paths in the release that `npm run build` writes. Each must exist after a build, "
                    "or the release fails and the live one keeps serving.",
        examples=[["scheduler/static/scheduler/dist"]],
    )


class NginxSite(Strict):
    name: Name = Field(description="File name in /etc/nginx/sites-available ('default' is Debian's own site, "
                       "which the repo removes).", examples=["django"])
    port: int = Field(default=80, ge=1, le=65535, description="Port nginx listens on (plain HTTP).",
                      examples=[80, 8001])
    server_names: list[ServerName] = Field(
        default=["_"], min_length=1,
        description="server_name values; the first is the canonical name (and the TLS certificate's).",
        examples=[["pravoo.in"]],
    )
    tls: bool = Field(
        default=False,
        description="Serve HTTPS on 443 with a certificate from certbot for server_names[0]; HTTP redirects.",
        examples=[True],
    )


# variables of the process itself (systemd, the loader, gunicorn), never the app's settings
PROCESS_ENV_KEYS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "GUNICORN_CMD_ARGS", "INVOCATION_ID",
                              "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "TZ"})


class HealthCheck(Strict):
    """What a release must answer before it stays live (asked on gunicorn's socket with the site's Host)."""

    path: UrlPath = Field(default="/healthz", description="URL path the release is asked for.",
                          examples=["/healthz", "/api/v3/status/"])
    status: int = Field(default=200, ge=200, le=399, description="The HTTP status it must answer with.",
                        examples=[200])


class SettingsEnv(Strict):
    """The environment variable names the app reads for the settings the repo derives from the
    model. None: the app reads no such variable (the repo writes none)."""

    secret_key: EnvKey = Field(default="DJANGO_SECRET_KEY", description="Name of the secret key variable.",
                               examples=["SECRET_KEY"])
    debug: EnvKey | None = Field(default="DJANGO_DEBUG", description="Name of the debug flag (always written "
                                 "as 0: production never runs with DEBUG).", examples=["DEBUG"])
    allowed_hosts: EnvKey | None = Field(default="DJANGO_ALLOWED_HOSTS", description="Name of the "
                                         "comma-separated allowed hosts.", examples=["ALLOWED_HOSTS"])
    csrf_trusted_origins: EnvKey | None = Field(default="DJANGO_CSRF_TRUSTED_ORIGINS", description="Name of "
                                                "the comma-separated trusted origins.", examples=[None])
    secure_cookies: EnvKey | None = Field(default="DJANGO_SECURE_COOKIES", description="Name of the 1/0 flag "
                                          "for Secure session and CSRF cookies (on for TLS sites).",
                                          examples=[None])
    static_root: EnvKey | None = Field(default="STATIC_ROOT", description="Name of the variable collectstatic "
                                       "reads its target from; None: the app's settings fix it (static_dir "
                                       "must then say where).", examples=[None])
    use_sqlite: EnvKey | None = Field(default="USE_SQLITE", description="Name of the 1/0 SQLite switch.",
                                      examples=[None])
    sqlite_path: EnvKey | None = Field(default="SQLITE_PATH", description="Name of the SQLite file's path.",
                                       examples=["DB_PATH"])
    postgres_db: EnvKey | None = Field(default="POSTGRES_DB", description="Name of the PostgreSQL database "
                                       "name variable.", examples=["DB_NAME"])
    postgres_user: EnvKey | None = Field(default="POSTGRES_USER", description="Name of the PostgreSQL role "
                                         "variable.", examples=["DB_USER"])
    postgres_host: EnvKey | None = Field(default="POSTGRES_HOST", description="Name of the PostgreSQL host "
                                         "variable (written empty: the local socket).", examples=["DB_HOST"])

    def names(self) -> dict[str, str]:
        """Option -> variable name, for the names the app reads."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @model_validator(mode="after")
    def _distinct(self) -> SettingsEnv:
        seen: dict[str, str] = {}
        for option, name in self.names().items():
            if name in seen:
                raise option_error(option, f"{name!r} is already the name of {seen[name]}: each setting needs "
                                   "its own variable")
            if name in PROCESS_ENV_KEYS or name == "DJANGO_SETTINGS_MODULE" or name.startswith(("LD_", "PYTHON")):
                raise option_error(option, f"{name!r} controls how the process starts; name the app's own variable")
            seen[name] = option
        return self


class AppProcess(Strict):
    """A long-running manage.py command beside gunicorn (a queue worker, an alert sender): its own
    systemd unit, from the same release, user and environment, restarted with every release."""

    command: ManageCommand = Field(description="manage.py subcommand and arguments (no shell).",
                                   examples=[["sendalerts"]])
    unit: UnitName | None = Field(default=None, description="systemd unit name; None: '<app>-<process>'.",
                                  examples=["healthchecks-sendalerts"])


class DjangoApp(Strict):
    """One Django app: code, virtualenv, env file, gunicorn unit, nginx site."""

    user: Username = Field(description="Unprivileged system user (and group) the app runs as.",
                           examples=["rental_scheduler"])
    source: GitSource = Field(description="Where the code comes from.")
    manage_dir: Annotated[str, AfterValidator(lambda v: v and _check_repo_path(v))] = Field(
        default="", description="Subdirectory of the repository that holds manage.py ('' for the top).",
        examples=["chip_dashboard"],
    )
    settings_module: ModulePath = Field(description="DJANGO_SETTINGS_MODULE.", examples=["broker_portal.settings"])
    wsgi_app: WsgiTarget = Field(description="gunicorn's WSGI application.",
                                 examples=["broker_portal.wsgi:application"])
    unit: UnitName = Field(description="systemd unit (service) name, without .service.",
                           examples=["gunicorn-rental_scheduler"])
    workers: int = Field(default=3, ge=1, le=32, description="gunicorn --workers.", examples=[3])
    timeout: int = Field(default=60, ge=5, le=3600, description="gunicorn --timeout (seconds).", examples=[60])
    allowed_hosts: list[AllowedHost] = Field(
        min_length=1, description="DJANGO_ALLOWED_HOSTS: every name nginx serves the app by must be here.",
        examples=[["pravoo.in", "72.61.148.117"]])
    secret_key: SecretStr = Field(description="SECRET. Django's SECRET_KEY (the variable settings_env.secret_key "
                                              "names), from the secrets file.",
                                  examples=["(50 random characters)"])
    database: Database = Field(description="Where the app keeps its data (engine 'sqlite' or 'postgresql').",
                               examples=[{"engine": "sqlite", "path": "/var/lib/chip_dashboard/db.sqlite3"},
                                         {"engine": "postgresql", "name": "gts_scheduler",
                                          "role": "rental_scheduler_user"}])
    extra_databases: dict[Ident, PostgresDatabase] = Field(
        default={},
        description="Further databases; the key is the env prefix (ACCOUNTING -> ACCOUNTING_POSTGRES_DB, ...).",
        examples=[{"accounting": {"engine": "postgresql", "name": "gingerich_trailer_rentals",
                                  "role": "rental_scheduler_user"}}],
    )
    env: dict[EnvKey, Annotated[str, Field(max_length=4096)]] = Field(
        default={}, description="Further non-secret environment variables for the app. Names the repo sets "
                                "itself (DJANGO_SECRET_KEY, ...) and names of secrets are refused.",
        examples=[{"FEATURE_X": "1"}],
    )
    secret_env: dict[EnvKey, SecretStr] = Field(
        default={}, description="SECRET. Further secret environment variables (API tokens, DSNs), from the "
                                "secrets file under apps.<name>.secret_env; never from group_data.",
        examples=[{"SENTRY_DSN": "(from the secrets file)"}],
    )
    discord_alerts: DiscordAlerts | None = Field(
        default=None, description="Discord error alerts (DISCORD_* variables); None turns them off.",
        examples=[None],
    )
    frontend_build: FrontendBuild | None = Field(
        default=None, description="The Node front-end build; None: the app has none.",
        examples=[{"inputs": ["frontend", "scheduler/templates"], "outputs": ["scheduler/static/scheduler/dist"]}],
    )
    extra_requirements: list[PipPin] = Field(
        default=[], description="pip requirements installed after the app's own requirements.txt, for what "
                                "it lacks (gunicorn, a database driver); each pinned to one version.",
        examples=[["gunicorn==23.0.0"]])
    static_dir: RepoPath = Field(
        default="staticfiles", description="Where collectstatic writes, relative to manage_dir (the app's "
                                           "STATIC_ROOT); nginx serves /static/ from it.",
        examples=["staticfiles", "static-collected"])
    health: HealthCheck = Field(default=HealthCheck(), description="The check a release must pass to stay live.")
    release_commands: list[ManageCommand] = Field(
        default=[], description="manage.py commands run after migrate and before the switch, as the app user "
                                "with its environment (e.g. compress); one failing keeps the old release live.",
        examples=[[["compress", "--force"]]])
    settings_env: SettingsEnv = Field(default=SettingsEnv(), description="The variable names the app reads "
                                      "its standard settings from.")
    processes: dict[Ident, AppProcess] = Field(
        default={}, description="Long-running manage.py commands beside gunicorn, each its own unit.",
        examples=[{"sendalerts": {"command": ["sendalerts"]}}])
    nginx: NginxSite = Field(description="The nginx site in front of the app.")
    log_dir: Annotated[str, path_under("/var/log", example="/var/log/gts/rental_scheduler")] | None = Field(
        default=None, description="gunicorn access.log/error.log directory under /var/log; None: the journal.",
        examples=["/var/log/gts/rental_scheduler"],
    )
    keep_releases: int = Field(default=3, ge=2, le=20, description="Releases kept on disk for rollback.",
                               examples=[3])

    def managed_env_keys(self) -> set[str]:
        """Environment variables the repo itself sets for the app (templates/etc/iac/apps/app.env.j2);
        `env` and `secret_env` may not override them."""
        keys = {"DJANGO_SETTINGS_MODULE", *self.settings_env.names().values(), "DISCORD_WEBHOOK_URL",
                "DISCORD_ALERTS_ENABLED", "DISCORD_ALERTS_DEDUP_SECONDS", "DISCORD_ALERTS_TIMEOUT_SECONDS",
                "DISCORD_ALERTS_APP_NAME", "DISCORD_ALERTS_ENV"}
        for prefix in self.extra_databases:
            keys |= {f"{prefix.upper()}_POSTGRES_{k}" for k in ("DB", "USER", "HOST")}
        return keys

    @model_validator(mode="after")
    def _names_consistent(self) -> DjangoApp:
        names = [n for n in self.nginx.server_names if n != "_"]
        if self.nginx.tls and not names:
            raise option_error("nginx.server_names", (
                "a TLS site needs the domain its certificate is for as the first server name; '_' (any "
                "name) cannot have a certificate (example: ['pravoo.in'])"))
        if self.nginx.tls and self.nginx.server_names[0] == "_":
            raise option_error("nginx.server_names", f"the first name is the certificate's: put the domain "
                               f"first, e.g. {[*names, '_']}")
        for server_name in names:
            bare = server_name.lstrip("*.")
            covered = any(h == server_name or (h.startswith(".") and (bare == h[1:] or bare.endswith(h)))
                          for h in self.allowed_hosts)
            if not covered:
                want = f".{bare}" if server_name.startswith(("*.", ".")) else server_name
                raise option_error("allowed_hosts", (
                    f"must contain {want!r}: nginx serves the app as {server_name!r} (nginx.server_names) "
                    f"and Django answers 400 to a Host it does not allow; add it to {self.allowed_hosts}"))
        reserved = self.managed_env_keys()
        sources = {name: _ENV_SOURCES.get(option, f"settings_env.{option}")
                   for option, name in self.settings_env.names().items()} | _ENV_SOURCES
        for key in self.env:
            if key in reserved:
                raise option_error(f"env.{key}", (
                    f"is set by the repo from the model ({sources.get(key, 'see app.env.j2')}); "
                    f"set that option instead of overriding the variable, e.g. remove env.{key}"))
            if key in PROCESS_ENV_KEYS or key.startswith(("LD_", "PYTHON", "SYSTEMD_")):
                raise option_error(f"env.{key}", "controls how the process starts (loader, interpreter or "
                                   "systemd), not the app: it cannot be set through env")
            if SECRET_NAME_RE.search(key):
                raise option_error(f"env.{key}", (
                    "looks like a secret: group_data is in the repository; put it in the secrets file as "
                    f"apps.<name>.secret_env.{key} (see README, 'Secrets'), or rename it if it is not one"))
        for key in self.secret_env:
            if key in reserved or key in self.env or key in PROCESS_ENV_KEYS or key.startswith(("LD_", "PYTHON")):
                raise option_error(f"secret_env.{key}", "is already set by the repo or by `env`; use another name")
        return self


# where a managed variable's value comes from (for the message refusing an override): by
# settings_env option, and by the names the repo alone sets
_ENV_SOURCES = {
    "secret_key": "secret_key in the secrets file", "debug": "always 0", "allowed_hosts": "allowed_hosts",
    "csrf_trusted_origins": "nginx.server_names", "secure_cookies": "nginx.tls", "static_root": "static_dir",
    "use_sqlite": "database.engine", "sqlite_path": "database.path", "postgres_db": "database.name",
    "postgres_user": "database.role", "postgres_host": "the local socket",
    "DJANGO_SETTINGS_MODULE": "settings_module",
    "DISCORD_WEBHOOK_URL": "discord_alerts.webhook_url in the secrets file",
}
SECRET_NAME_RE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|WEBHOOK|CREDENTIAL|"
                            r"(^|_)DSN$|(^|_)AUTH$")


class TlsSection(Strict):
    email: Annotated[str, _check(re.compile(r"[A-Za-z0-9._%+-]{1,64}@" + FQDN_RE.pattern.strip("^$")),
                                 "e-mail address", "admin@pravoo.in")] = Field(
        description="Account e-mail for the ACME CA (expiry notices).", examples=["admin@pravoo.in"])
    acme_directory: Annotated[str, AfterValidator(lambda v: _check_https_url(
            v, "https://acme-v02.api.letsencrypt.org/directory"))] = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory URL (Let's Encrypt in production).",
        examples=["https://acme-v02.api.letsencrypt.org/directory"],
    )
    acme_ca_bundle: Annotated[str, AfterValidator(_check_pem)] | None = Field(
        default=None,
        description="PEM of the CA that signs the ACME server's own HTTPS certificate, if not a public one.",
        examples=[None], json_schema_extra={"multiline": True},
    )


class PostgresSection(Strict):
    """The local PostgreSQL server. Apps connect over the unix socket with peer authentication:
    no passwords exist to leak or rotate. Which system user may act as which role follows from the
    apps (an app's user may use the roles of its databases; pg_ident.conf map `iac`)."""

    roles: list[Ident] = Field(default=[], description="Login roles (no passwords: peer auth).",
                               examples=[["rental_scheduler_user"]])
    databases: dict[Ident, Ident] = Field(
        default={}, description="Database name -> owner role ('postgres' or one of `roles`).",
        examples=[{"gts_scheduler": "rental_scheduler_user", "gingerich_trailer": "postgres"}],
    )

    @model_validator(mode="after")
    def _owners_declared(self) -> PostgresSection:
        for db, owner in self.databases.items():
            if owner != "postgres" and owner not in self.roles:
                raise option_error(f"databases.{db}", f"owner {owner!r} is not in postgres.roles "
                                   f"{self.roles}: add it there, or make 'postgres' the owner")
        return self


class NodeSection(Strict):
    source: Literal["nodesource", "debian"] = Field(
        default="nodesource",
        description="Where nodejs comes from: NodeSource's apt repository (runbook) or Debian's own package.",
        examples=["nodesource"],
    )
    major: int = Field(default=20, ge=18, le=30, description="NodeSource major version (node_<major>.x).",
                       examples=[20])


class NetworkSection(Strict):
    """A static address, applied with ifupdown (/etc/network/interfaces.d/), as Debian 12 servers
    installed without a desktop do."""

    interface: Annotated[str, _check(re.compile(r"[a-z][a-z0-9]{0,14}"), "interface name", "eno1")] = Field(
        description="Interface name.", examples=["eno1"])
    address: IPv4Interface = Field(description="Address with prefix length.", examples=["192.168.1.230/24"])
    gateway: IPv4 = Field(description="Default gateway.", examples=["192.168.1.1"])
    dns: list[IPv4] = Field(min_length=1, description="DNS servers (resolv.conf).", examples=[["192.168.1.1"]])
    search: list[Fqdn] = Field(default=[], description="DNS search domains.", examples=[["lan"]])

    @model_validator(mode="after")
    def _gateway_on_link(self) -> NetworkSection:
        net = ipaddress.IPv4Interface(self.address).network
        if ipaddress.IPv4Address(self.gateway) not in net:
            raise option_error("gateway", f"{self.gateway} is not in {net}, the network of `address`; the host "
                               f"would have no route to it (example: '{next(net.hosts())}')")
        return self


class TailscaleSection(Strict):
    enabled: bool = Field(default=True, description="Install tailscale from its apt repository.",
                          examples=[True])


# ---- backups ---------------------------------------------------------------------------------

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


class LocalBackups(Strict):
    """Scheduled, validated database dumps on this host (runbook: "Local Postgres backups").

    Every PostgreSQL database the host declares (postgres.databases) and every app's SQLite
    database is dumped, unless `databases` names a subset."""

    unit: UnitName = Field(default="pg-backup-gts", description="Name of the .service/.timer pair.",
                           examples=["pg-backup-gts"])
    script: Script = Field(default="/usr/local/sbin/pg_backup_gts_databases.sh",
                            description="The backup command the service runs (a file of this repo).",
                            examples=["/usr/local/sbin/pg_backup_gts_databases.sh"])
    schedule: OnCalendar = Field(default="hourly", description="OnCalendar= of the timer.",
                                 examples=["hourly", "*-*-* 03:10:00"])
    mount: Annotated[str, path_under("/mnt", "/media", "/srv", example="/mnt/pg_backups",
                                     owned=False)] | None = Field(
        default="/mnt/pg_backups",
        description="Mount point of the dump disk. The converge declares its fstab line and checks that it is "
                    "mounted; it never formats or mounts anything. A backup run refuses to write when it is "
                    "not a mount point (nothing lands on the root filesystem). None: no separate disk.",
        examples=["/mnt/pg_backups", None])
    disk_uuid: FsUuid | None = Field(
        default=None,
        description="Filesystem UUID of the dump disk, for its fstab line (`blkid` on the host). None: the "
                    "fstab line is not managed.",
        examples=["3f0a3c2e-5b7d-4e0f-9a51-0c8e6b9d2a11"])
    fstype: Literal["ext4", "xfs", "btrfs"] = Field(default="ext4", description="Filesystem of the dump disk.",
                                                     examples=["ext4"])
    root: Annotated[str, path_under("/mnt", "/media", "/srv", "/var/backups", "/var/lib",
                                    example="/mnt/pg_backups/postgres")] = Field(
        default="/mnt/pg_backups/postgres",
                          description="Where db/<name>/, globals/ and logs/ are kept (under `mount` if set).",
                          examples=["/mnt/pg_backups/postgres"])
    databases: list[Ident] | None = Field(
        default=None,
        description="Databases to dump; None: every PostgreSQL database in postgres.databases and every "
                    "app's SQLite database (named after the app).",
        examples=[None, ["gts_scheduler", "gts_shop_scheduler"]])
    keep_dump_days: Days = Field(default=7, description="Dumps and their .sha256 older than this are deleted.",
                                 examples=[7])
    keep_globals_days: Days = Field(default=30, description="Globals dumps (roles, grants) kept this long.",
                                    examples=[30])
    keep_log_days: Days = Field(default=30, description="Backup logs kept this long.", examples=[30])
    group: Username = Field(default="postgres", description="Group that may read the dumps (the admin is in it).",
                            examples=["postgres"])

    @model_validator(mode="after")
    def _root_on_disk(self) -> LocalBackups:
        if self.mount and not (self.root + "/").startswith(self.mount.rstrip("/") + "/"):
            raise option_error("root", f"{self.root!r} is not on the dump disk mounted at {self.mount!r}; "
                               f"use e.g. {self.mount.rstrip('/')}/postgres")
        return self


DEFAULT_SYSTEM_STATE_INCLUDES = [
    "/etc/gts", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root", "/etc/fstab",
    "/usr/local/sbin", "/etc/gts/bootstrap",
]
DEFAULT_SYSTEM_STATE_EXCLUDES = [
    "/mnt/pg_backups", "/var/lib/postgresql", "/var/log", "/tmp", "/var/cache", "/root/.cache",
    "/home/*/.cache", "/srv/apps", "/srv/venvs", "**/.venv", "**/venv",
]


class ResticTarget(Strict):
    """One restic repository on S3 and the timer that backs up into it."""

    repository: ResticRepository = Field(
        description="restic repository URL (RESTIC_REPOSITORY).",
        examples=["s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres"])
    password: SecretStr = Field(description="SECRET. RESTIC_PASSWORD, from the secrets file (password manager).",
                                examples=["(a long random passphrase)"])
    access_key_id: SecretStr = Field(description="SECRET. AWS_ACCESS_KEY_ID of the bucket.",
                                     examples=["DO00EXAMPLE"])
    secret_access_key: SecretStr = Field(description="SECRET. AWS_SECRET_ACCESS_KEY of the bucket.",
                                         examples=["(the key's secret)"])
    unit: UnitName = Field(description="Name of the .service/.timer pair.", examples=["restic-postgres"])
    script: Script = Field(description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: EtcFile = Field(description="root 0600 KEY=value file (systemd EnvironmentFile=).",
                              examples=["/etc/gts/backup/restic.env"])
    schedule: OnCalendar = Field(description="OnCalendar= of the backup timer.", examples=["*-*-* 02:30:00"])
    tag: str = Field(description="restic tag of the snapshots.", examples=["postgres"],
                     pattern=r"^[a-z0-9-]{1,40}$")
    keep_hourly: Keep = Field(default=0, description="forget --keep-hourly", examples=[48])
    keep_daily: Keep = Field(default=30, description="forget --keep-daily", examples=[30])
    keep_weekly: Keep = Field(default=12, description="forget --keep-weekly", examples=[12])
    keep_monthly: Keep = Field(default=12, description="forget --keep-monthly", examples=[12])

    @model_validator(mode="after")
    def _keeps_something(self) -> ResticTarget:
        if not (self.keep_hourly or self.keep_daily or self.keep_weekly or self.keep_monthly):
            raise option_error("keep_daily", "every keep_* is 0: `restic forget` would delete every snapshot; "
                               "keep at least one, e.g. keep_daily = 30")
        return self


class ResticPostgres(ResticTarget):
    """The local dumps, offsite (runbook: "Offsite backups")."""

    unit: UnitName = Field(default="restic-postgres", description="Name of the .service/.timer pair.",
                           examples=["restic-postgres"])
    script: Script = Field(default="/usr/local/sbin/restic_backup_postgres_dumps.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: EtcFile = Field(default="/etc/gts/backup/restic.env", description="root 0600 KEY=value file.",
                              examples=["/etc/gts/backup/restic.env"])
    schedule: OnCalendar = Field(default="*-*-* 02:30:00", description="OnCalendar= of the backup timer.",
                                 examples=["*-*-* 02:30:00"])
    tag: str = Field(default="postgres", description="restic tag of the snapshots.", examples=["postgres"],
                     pattern=r"^[a-z0-9-]{1,40}$")
    keep_hourly: Keep = Field(default=48, description="forget --keep-hourly", examples=[48])
    check_unit: UnitName = Field(default="restic-postgres-check", description="The weekly `restic check`.",
                                 examples=["restic-postgres-check"])
    check_schedule: OnCalendar = Field(default="Sun *-*-* 03:30:00", description="OnCalendar= of the check.",
                                       examples=["Sun *-*-* 03:30:00"])


class ResticSystemState(ResticTarget):
    """Configuration and state to rebuild the server from (runbook: "System-state backups")."""

    unit: UnitName = Field(default="restic-system-state-backup", description="Name of the .service/.timer pair.",
                           examples=["restic-system-state-backup"])
    script: Script = Field(default="/usr/local/sbin/restic-system-state-backup.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic-system-state-backup.sh"])
    env_file: EtcFile = Field(default="/etc/gts/backup/restic-system-state.env",
                              description="root 0600 KEY=value file.",
                              examples=["/etc/gts/backup/restic-system-state.env"])
    schedule: OnCalendar = Field(default="*-*-* 02:20:00", description="OnCalendar= of the backup timer.",
                                 examples=["*-*-* 02:20:00"])
    tag: str = Field(default="system-state", description="restic tag of the snapshots.",
                     examples=["system-state"], pattern=r"^[a-z0-9-]{1,40}$")
    includes: list[AbsPath] = Field(default=DEFAULT_SYSTEM_STATE_INCLUDES, min_length=1,
                                    description="includes.txt: what is backed up.",
                                    examples=[DEFAULT_SYSTEM_STATE_INCLUDES])
    excludes: list[Annotated[str, Field(pattern=r"^(/|\*\*/)([A-Za-z0-9_*-][A-Za-z0-9_.*-]*/?)*$")]] = Field(
        default=DEFAULT_SYSTEM_STATE_EXCLUDES, description="excludes.txt: restic --exclude-file patterns.",
        examples=[DEFAULT_SYSTEM_STATE_EXCLUDES])
    lists_dir: EtcFile = Field(default="/etc/gts/backup/system-state",
                               description="Where includes.txt and excludes.txt live.",
                               examples=["/etc/gts/backup/system-state"])
    inventory_dir: EtcFile = Field(
        default="/etc/gts/bootstrap",
        description="The inventory snapshot (packages, enabled services, mounts, nginx -T), regenerated "
                    "before each run.", examples=["/etc/gts/bootstrap"])
    staging_dir: Annotated[str, path_under("/var/lib", example="/var/lib/iac/restore/system-state")] = Field(
        default="/var/lib/iac/restore/system-state",
        description="Where a rebuild (`make dr`) restores the newest snapshot before the converge; the "
                    "converge takes what the model does not declare from there (the apps' deploy keys).",
        examples=["/var/lib/iac/restore/system-state"])
    env_helper: Script = Field(default="/usr/local/sbin/restic-system-state-env.sh",
                                description="Runs a command with this repository's environment "
                                            "(runbook: \"View snapshots (helper method)\").",
                                examples=["/usr/local/sbin/restic-system-state-env.sh"])


class OffsiteBackups(Strict):
    postgres: ResticPostgres | None = Field(default=None, description="The dumps, offsite (None: none).",
                                            examples=[None])
    system_state: ResticSystemState | None = Field(default=None, description="System state, offsite "
                                                   "(None: none).", examples=[None])


class BackupAlerts(Strict):
    webhook_url: SecretStr = Field(
        description="SECRET. Discord webhook that receives one message per failed backup unit.",
        examples=["https://discord.com/api/webhooks/<id>/<token>"], json_schema_extra={"placeholder": OFFLINE_URL})
    env_file: EtcFile = Field(default="/etc/iac/backup-alert.env",
                              description="root 0600 file holding the webhook for the alert unit.",
                              examples=["/etc/iac/backup-alert.env"])


class BackupsSection(Strict):
    """Backups of the host's data: local dumps on a timer, offsite copies with restic, alerts."""

    local: LocalBackups = Field(default=LocalBackups(), description="Local dumps.")
    offsite: OffsiteBackups = Field(default=OffsiteBackups(), description="restic repositories.")
    alerts: BackupAlerts | None = Field(default=None, description="Where failures are reported (None: the "
                                        "journal only).", examples=[None])
    settings_file: EtcFile = Field(default="/etc/iac/backup.json",
                                   description="What the backup engine reads (written from this model).",
                                   examples=["/etc/iac/backup.json"])


# ---- exposure: sshd, packet filter, security updates -----------------------------------------

Port = Annotated[int, Field(ge=1, le=65535)]


class SshSection(Strict):
    """sshd, through a drop-in that sorts before any other (sshd keeps the first value it reads).

    A change is applied commit-confirm style: `sshd -t`, a revert armed on the host, reload, a
    second, new SSH connection from this machine, and only then the revert disarmed."""

    port: Port = Field(default=22, description="The port sshd listens on.", examples=[22])
    password_authentication: bool = Field(
        default=False,
        description="Password and keyboard-interactive login. Off: keys only (the runbooks left it on).",
        examples=[False])
    permit_root_login: Literal["prohibit-password", "no"] = Field(
        default="prohibit-password",
        description="Root login: by key only ('prohibit-password'), or not at all ('no': the inventory must "
                    "then connect as the admin with sudo).",
        examples=["prohibit-password"])


class FirewallSection(Strict):
    """nftables, default-drop inbound. Open: loopback, replies to the host's own traffic, ICMP,
    and exactly the TCP ports the model declares (HostConfig.open_tcp_ports: sshd, every app's
    nginx port, 443 for TLS sites, `extra_tcp_ports`)."""

    enabled: bool = Field(default=True, description="Manage the packet filter (table inet iac).", examples=[True])
    extra_tcp_ports: list[Port] = Field(default=[], description="Further TCP ports to open.", examples=[[5000]])
    trusted_interfaces: list[Annotated[str, _check(re.compile(r"[a-z][a-z0-9]{0,14}"), "interface name",
                                                   "tailscale0")]] = Field(
        default=[], description="Interfaces whose inbound traffic is accepted whole (a VPN such as Tailscale).",
        examples=[["tailscale0"]])


class UpdatesSection(Strict):
    unattended_upgrades: bool = Field(
        default=True, description="Install security updates daily (unattended-upgrades), never rebooting.",
        examples=[True])


# names other parts of the host already use
RESERVED_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "_apt", "nobody", "postgres", "sshd", "messagebus", "systemd-network",
    "systemd-resolve", "systemd-timesync", "tss", "nginx", "git",
})
RESERVED_UNITS = frozenset({
    "nginx", "postgresql", "ssh", "sshd", "cron", "dbus", "networking", "nftables", "tailscaled", "certbot",
    "unattended-upgrades", "apt-daily", "apt-daily-upgrade", "logrotate", "getty@", "iac-backup-alert@",
})
RESERVED_SITES = frozenset({"default"})


# Where the release engine's settings live on a host (its own default, files/usr/local/lib/iac/
# iac_release.py SETTINGS_DIR, is checked equal by tests/unit/test_release_engine.py)
RELEASE_SETTINGS_DIR = "/etc/iac/apps"
# what root records about each app's releases (what is live, what was built, the manifests): a
# directory only root can write, so that no app can forge a record root later acts on
RELEASE_STATE_DIR = "/var/lib/iac/releases"
# root-only runtime directory of the host engines: their locks (never in world-writable /run/lock)
RUNTIME_DIR = "/run/iac"
NGINX_SITES_AVAILABLE = "/etc/nginx/sites-available"
NGINX_SITES_ENABLED = "/etc/nginx/sites-enabled"
# what the repository manages on a host (HostConfig.managed), written there by every whole run
MANAGED_MANIFEST = "/etc/iac/managed.json"
# shared by every app's gunicorn; shipped by operations/django_app.py release_engine()
GUNICORN_CONFIG = "/usr/local/lib/iac/gunicorn_conf.py"
# The sandboxing of everything an app runs: its gunicorn and process units (the templates write
# these lines) and the release engine's transient units for builds, manage.py steps and the
# candidate gunicorn (passed in the release settings). One list: a package's install script or a
# manage.py command runs as confined as the app itself, and the two cannot drift apart.
APP_SANDBOXING = (
    "NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateDevices=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "ProtectClock=yes", "ProtectHostname=yes", "RestrictSUIDSGID=yes", "RestrictRealtime=yes",
    "RestrictNamespaces=yes", "LockPersonality=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures=native", "CapabilityBoundingSet=", "UMask=0027",
)


@dataclass(frozen=True)
class AppPaths:
    """Every path of one app on its host, derived here only and passed to templates, facts and
    the release engine (which reads them from its settings file)."""

    env_file: str          # EnvironmentFile= of every unit of the app (secrets; root:<user> 0640)
    release_settings: str  # the release engine's settings (JSON, no secrets)
    releases: str          # release directories, the git mirror, caches (the app user's: it builds there)
    state_dir: str         # root's records of the app's releases (root 0700; the app can forge none)
    deployed: str          # what the last release made live (read by the DeployedRelease fact), in state_dir
    lock: str              # one release engine run at a time per app (root-only RUNTIME_DIR)
    deploy_key: str        # the app's deploy key (made on the host as the app user, never replaced)
    known_hosts: str       # the git host's pinned key: root's file, the app cannot change it
    app_link: str          # -> the live release
    venv_link: str         # -> the live release's virtualenv
    code_dir: str          # manage.py's directory in the live release (WorkingDirectory=)
    static_root: str       # collectstatic's target in the live release (nginx's /static/)
    gunicorn: str          # ExecStart's program
    gunicorn_config: str   # settings some gunicorn versions lack (files/usr/local/lib/iac/gunicorn_conf.py)
    runtime_dir: str       # RuntimeDirectory= name (under /run)
    socket: str            # gunicorn's socket, held by systemd (socket_unit): nginx and the health check connect
    socket_unit: str       # <unit>.socket: keeps the socket (and queued connections) across restarts
    socket_unit_file: str
    unit_file: str
    backup_dir: str        # pre-migrate database snapshots
    site_enabled: str      # the app's nginx site as enabled (the release checks through it once it exists)
    site_available: str    # the app's nginx site
    logrotate: str | None  # /etc/logrotate.d/<log dir's parent>-<app>, when the app has a log_dir
    venvs: str             # its virtualenvs, one per requirements (the release engine names them)
    process_units: dict[str, str]  # process name -> unit name
    process_unit_files: dict[str, str]  # unit name -> unit file


class HostConfig(Strict):
    """Everything one host declares. Sections are added as services are declared."""

    host: HostSection = Field(description="Identity of the host.")
    base: BaseSection = Field(default=BaseSection(), description="Base system.")
    admin: AdminSection = Field(description="The administrator's account.")
    apps: dict[Ident, DjangoApp] = Field(default={}, description="Django apps on this host, by name.",
                                         examples=[{}])
    tls: TlsSection | None = Field(default=None, description="certbot settings, for sites with tls.",
                                   examples=[None])
    postgres: PostgresSection | None = Field(default=None, description="Local PostgreSQL server.",
                                             examples=[None])
    app_env_dir: Annotated[str, path_under("/etc", example="/etc/gts/apps")] = Field(
        default="/etc/iac/apps", description="Directory of the apps' env files (under /etc).",
        examples=["/etc/gts/apps"])
    apps_group: Username | None = Field(
        default=None,
        description=(
            "A group every app user belongs to (the runbook's gtsapps). It grants nothing by itself: "
            "env files are readable by their own app's group only."
        ),
        examples=["gtsapps"],
    )
    node: NodeSection = Field(default=NodeSection(), description="Node.js for front-end builds.")
    network: NetworkSection | None = Field(default=None, description="Static network configuration "
                                           "(None: left as the provider set it up).", examples=[None])
    tailscale: TailscaleSection | None = Field(default=None, description="Tailscale (None: not managed).",
                                               examples=[None])
    backups: BackupsSection | None = Field(default=None, description="Backups of the host's data "
                                           "(None: none are made).", examples=[None])
    ssh: SshSection = Field(default=SshSection(), description="sshd.")
    firewall: FirewallSection = Field(default=FirewallSection(), description="Packet filter (nftables).")
    updates: UpdatesSection = Field(default=UpdatesSection(), description="Automatic security updates.")

    def app_paths(self, name: str) -> AppPaths:
        """The paths of app ``name`` (see AppPaths)."""
        app = self.apps[name]
        # manage.py's directory; '/srv/apps/<app>/' for an app at the top (as units always had it)
        code = f"/srv/apps/{name}/{app.manage_dir}"
        units = {proc: p.unit or f"{name}-{proc}" for proc, p in app.processes.items()}
        return AppPaths(
            env_file=f"{self.app_env_dir}/{name}.env",
            release_settings=f"{RELEASE_SETTINGS_DIR}/{name}.release",
            releases=f"/srv/releases/{name}",
            state_dir=f"{RELEASE_STATE_DIR}/{name}",
            deployed=f"{RELEASE_STATE_DIR}/{name}/deployed.json",
            lock=f"{RUNTIME_DIR}/release-{name}.lock",
            deploy_key=f"/home/{app.user}/.ssh/id_ed25519",
            known_hosts=f"{RELEASE_SETTINGS_DIR}/{name}.known_hosts",
            app_link=f"/srv/apps/{name}",
            venv_link=f"/srv/venvs/{name}",
            code_dir=code,
            static_root=posixpath.join(code, app.static_dir),
            gunicorn=f"/srv/venvs/{name}/bin/gunicorn",
            gunicorn_config=GUNICORN_CONFIG,
            runtime_dir=app.unit,
            socket=f"/run/{app.unit}/gunicorn.sock",
            socket_unit=f"{app.unit}.socket",
            socket_unit_file=f"/etc/systemd/system/{app.unit}.socket",
            unit_file=f"/etc/systemd/system/{app.unit}.service",
            backup_dir=f"/var/backups/iac/{name}",
            site_enabled=f"{NGINX_SITES_ENABLED}/{app.nginx.name}",
            site_available=f"{NGINX_SITES_AVAILABLE}/{app.nginx.name}",
            logrotate=(f"/etc/logrotate.d/{posixpath.basename(posixpath.dirname(app.log_dir))}-{name}"
                       if app.log_dir else None),
            venvs=f"/srv/venvs/.{name}-*",
            process_units=units,
            process_unit_files={u: f"/etc/systemd/system/{u}.service" for u in units.values()},
        )

    def managed(self) -> list[dict[str, str | bool]]:
        """What the repository manages on this host, as recorded there (MANAGED_MANIFEST) by each
        whole run: an entry a later configuration no longer declares is an orphan. Units, files
        and users (``keep`` False) are removed by the next run; data (``keep`` True: databases,
        roles, release, virtualenv, backup, log and home directories, the links to the live
        release) is never deleted by a run,
        only reported as retained with ``remove``, the command an operator may run by hand.

        Example entry: ``{"kind": "unit", "name": "gunicorn-shop_scheduler.service",
        "app": "shop_scheduler", "keep": False, "remove": ""}``."""
        out: list[dict[str, str | bool]] = []

        def add(kind: str, name: str, app: str = "", remove: str = "") -> None:
            out.append({"kind": kind, "name": name, "app": app, "keep": bool(remove), "remove": remove})

        for name, app in self.apps.items():
            p = self.app_paths(name)
            for unit in (p.socket_unit, f"{app.unit}.service", *(f"{u}.service" for u in p.process_units.values())):
                add("unit", unit, name)
            for path in (p.socket_unit_file, p.unit_file, *p.process_unit_files.values(), p.env_file,
                         p.release_settings, p.known_hosts, p.site_available, p.site_enabled,
                         *([p.logrotate] if p.logrotate else [])):
                add("file", path, name)
            add("user", app.user, name)
            # kept with the releases they point at: the app declared again comes back as it was
            for link in (p.app_link, p.venv_link):
                add("link", link, name, f"rm -f {shlex.quote(link)}")
            data = [p.releases, p.state_dir, p.venvs, p.backup_dir, f"/home/{app.user}",
                    *([app.log_dir] if app.log_dir else [])]
            if isinstance(app.database, SqliteDatabase):
                data.append(app.database.path)
            for path in data:
                # a glob stays unquoted for the shell to expand; every other path is one word
                add("directory", path, name, f"rm -rf {path if path.endswith('*') else shlex.quote(path)}")
        if self.postgres is not None:
            for db in self.postgres.databases:
                add("database", db, "", f"runuser -u postgres -- dropdb {shlex.quote(db)}")
            for role in self.postgres.roles:
                add("role", role, "", f"runuser -u postgres -- dropuser {shlex.quote(role)}")
        return sorted(out, key=lambda e: (str(e["kind"]), str(e["name"])))

    def open_tcp_ports(self) -> list[int]:
        """The TCP ports reachable from outside the host: sshd, each app's site (and 443 for TLS
        sites), and firewall.extra_tcp_ports. Derived here only."""
        ports = {self.ssh.port, *self.firewall.extra_tcp_ports}
        for app in self.apps.values():
            ports.add(app.nginx.port)
            if app.nginx.tls:
                ports.add(443)
        return sorted(ports)

    @model_validator(mode="after")
    def _cross_checks(self) -> HostConfig:
        for name, app in self.apps.items():
            if app.nginx.tls and self.tls is None:
                raise option_error(f"apps.{name}.nginx.tls", "is on but the host has no `tls` section; "
                                   "set tls = {'email': ...} in group_data, or turn tls off")
            for db in [app.database, *app.extra_databases.values()]:
                if isinstance(db, PostgresDatabase):
                    pg = self.postgres
                    if pg is None or db.name not in pg.databases or db.role not in pg.roles:
                        raise option_error(f"apps.{name}", (
                            f"uses PostgreSQL database {db.name!r} as {db.role!r}: declare them in "
                            f"postgres.roles and postgres.databases"))
        self._apps_distinct()
        self._extra_ports_distinct()
        if self.backups is not None and self.backups.local.databases is not None:
            known = self.backup_databases(declared_only=True)
            for db in self.backups.local.databases:
                if db not in known:
                    raise option_error("backups.local.databases", (
                        f"{db!r} is not a database of this host; declared: {', '.join(known) or 'none'} "
                        "(postgres.databases, or an app name for its SQLite database)"))
        return self

    def _apps_distinct(self) -> None:
        """Two apps never share a user, unit, site or port, and none takes a name or port the
        system or another service of the host has (each would silently overwrite the other)."""
        taken_ports = {self.ssh.port: "sshd (ssh.port)"}
        if self.postgres:
            taken_ports[5432] = "PostgreSQL (postgres section)"
        users: dict[str, str] = {}
        units: dict[str, str] = {}
        sites: dict[str, str] = {}
        ports: dict[int, str] = dict(taken_ports)
        dirs: dict[str, str] = {}
        backup_units = self._backup_unit_names()
        for name, app in self.apps.items():
            at = f"apps.{name}"
            if app.user in RESERVED_USERS or app.user in (self.admin.name, self.apps_group):
                raise option_error(f"{at}.user", f"{app.user!r} is a user of the system, the admin or the apps "
                                   f"group; give the app a user of its own (example: {name!r})")
            if app.user in users:
                raise option_error(f"{at}.user", f"{app.user!r} is already the user of apps.{users[app.user]}; "
                                   "each app runs as its own user (its env file and key are readable by it)")
            users[app.user] = name
            if app.unit in RESERVED_UNITS or app.unit.startswith("systemd-") or app.unit in backup_units:
                raise option_error(f"{at}.unit", f"{app.unit!r} is the unit of another service on this host; "
                                   f"use e.g. 'gunicorn-{name}'")
            if app.unit in units:
                raise option_error(f"{at}.unit", f"{app.unit!r} is already the unit of {units[app.unit]}; "
                                   f"use e.g. 'gunicorn-{name}'")
            units[app.unit] = f"apps.{name}"
            for proc, unit in self.app_paths(name).process_units.items():
                if unit in RESERVED_UNITS or unit.startswith("systemd-") or unit in backup_units or unit in units:
                    raise option_error(f"{at}.processes.{proc}.unit", (
                        f"{unit!r} is already the unit of {units.get(unit, 'another service on this host')}; "
                        f"set processes.{proc}.unit to a name of its own (example: '{name}-{proc}-worker')"))
                units[unit] = f"apps.{name}.processes.{proc}"
            site = app.nginx.name
            if site in RESERVED_SITES:
                raise option_error(f"{at}.nginx.name", f"{site!r} is Debian's default site, which the repo "
                                   f"removes; use e.g. {name!r}")
            if site in sites:
                raise option_error(f"{at}.nginx.name", f"{site!r} is already the site of apps.{sites[site]}: "
                                   f"the second would overwrite the first; use e.g. {name!r}")
            sites[site] = name
            # a state or log directory is chowned to its app's user: two apps cannot share one
            for option, path in (("database.path", posixpath.dirname(getattr(app.database, "path", "") or "")),
                                 ("log_dir", app.log_dir or "")):
                if path and path in dirs:
                    own = f"/var/lib/{name}/db.sqlite3" if option == "database.path" else f"/var/log/{name}"
                    raise option_error(f"{at}.{option}", f"{path} is already the state or log directory of "
                                       f"apps.{dirs[path]} (owned by its user); use one of this app's own, e.g. {own}")
                if path:
                    dirs[path] = name
            # every site is its port's default_server; TLS sites all listen on 443 too
            for port, option in ((app.nginx.port, "nginx.port"), *([(443, "nginx.tls")] if app.nginx.tls else [])):
                if port in ports:
                    raise option_error(f"{at}.{option}", (
                        f"port {port} is already taken by {ports[port]}; each site is the default server "
                        f"of its own port: pick another port (example: 8003)"))
                ports[port] = f"apps.{name}"

    def _extra_ports_distinct(self) -> None:
        app_ports = {a.nginx.port for a in self.apps.values()} | (
            {443} if any(a.nginx.tls for a in self.apps.values()) else set())
        for i, port in enumerate(self.firewall.extra_tcp_ports):
            if port == self.ssh.port or port in app_ports or port in self.firewall.extra_tcp_ports[:i]:
                raise option_error(f"firewall.extra_tcp_ports.{i}", f"port {port} is already open (sshd, an app's "
                                   "site, or listed twice); list only further ports (example: [5000])")

    def _backup_unit_names(self) -> set[str]:
        if self.backups is None:
            return set()
        names = {self.backups.local.unit}
        for target in (self.backups.offsite.postgres, self.backups.offsite.system_state):
            if target is not None:
                names.add(target.unit)
        if self.backups.offsite.postgres is not None:
            names.add(self.backups.offsite.postgres.check_unit)
        return names

    def backup_databases(self, declared_only: bool = False) -> dict[str, dict[str, Any]]:
        """Databases the local backups dump: name -> {"engine", "path" or "owner" and "users"}.

        PostgreSQL databases are named as in postgres.databases, with the app roles that write into
        a database another role owns ("users": the engine restores a database the superuser owns as
        that role, never as the superuser); an app's SQLite database by the app's name.
        ``declared_only``: every candidate, ignoring backups.local.databases."""
        found: dict[str, dict[str, Any]] = {}
        if self.postgres is not None:
            writers: dict[str, set[str]] = {}
            for app in self.apps.values():
                for used in [app.database, *app.extra_databases.values()]:
                    if isinstance(used, PostgresDatabase):
                        writers.setdefault(used.name, set()).add(used.role)
            for db, owner in self.postgres.databases.items():
                found[db] = {"engine": "postgresql", "owner": owner,
                             "users": sorted(writers.get(db, set()) - {owner})}
        for name, app in self.apps.items():
            if isinstance(app.database, SqliteDatabase):
                found[name] = {"engine": "sqlite", "path": app.database.path, "owner": app.user}
        if declared_only or self.backups is None or self.backups.local.databases is None:
            return found
        return {k: v for k, v in found.items() if k in self.backups.local.databases}

