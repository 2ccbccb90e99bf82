"""Options of the baseline (baseline): the deliberate local additions a host may hold besides
Debian's packages and what this repository writes, and how close to expiry a certificate may be."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated

from pydantic import AfterValidator, Field

from iac.values import Strict, type_name

# where an allowance would be a door: keys are declared with their accounts, and a directory of
# access configuration is never allowed whole
ACCESS_PLACES = ("/etc/ssh/", "/etc/sudoers", "/etc/pam.d/", "/etc/security/", "/root/.ssh/", "/home/")
CHECKED_DIRECTORIES = (
    "/etc/systemd/system", "/run/systemd/system", "/etc/systemd/system.control", "/run/systemd/system.control",
    "/usr/local/lib/systemd/system", "/etc/ssh/sshd_config.d", "/etc/sudoers.d", "/etc/cron.d", "/etc/cron.hourly",
    "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly", "/etc/cron.yearly", "/var/spool/cron/crontabs",
    "/etc/apt/sources.list.d", "/etc/apt/trusted.gpg.d", "/etc/apt/apt.conf.d", "/etc/apt/preferences.d",
    "/etc/apt/auth.conf.d", "/etc/ld.so.conf.d", "/etc/pam.d", "/etc/profile.d", "/etc/security/limits.d",
)
_PATH = re.compile(r"/[A-Za-z0-9_.@:+/-]+")


@type_name("absolute path of one file, unit file, drop-in or link")
def _check_allowed_path(value: str) -> str:
    example = "/etc/systemd/system/getty.target.wants/console-getty.service"
    if any(c in value for c in "*?[]"):
        raise ValueError(f"{value!r}: a pattern would allow whatever matches it later; name each path "
                         f"(example: {example!r})")
    if not _PATH.fullmatch(value) or value != posixpath.normpath(value) or value.startswith("//"):
        raise ValueError(f"{value!r} is not an absolute, normalised path of letters, digits and _ . @ : + / - "
                         f"(example: {example!r})")
    if value in CHECKED_DIRECTORIES or value.rstrip("/") in {p.rstrip("/") for p in ACCESS_PLACES}:
        raise ValueError(f"{value!r} is a whole directory the baseline checks: name the one file in it "
                         f"(example: {example!r})")
    if value.endswith(("/authorized_keys", "/authorized_keys2")):
        raise ValueError(f"{value!r}: keys are declared with their account (admin.ssh_authorized_keys, "
                         "ssh.root_authorized_keys), never allowed as a file")
    return value


@type_name("reason")
def _check_reason(value: str) -> str:
    if not value.strip() or len(value) > 200 or "\n" in value:
        raise ValueError("say in one line (at most 200 characters) why the host holds it "
                         "(example: 'nspawn console: the sandbox's containers log in on /dev/console')")
    return value


AllowedPath = Annotated[str, AfterValidator(_check_allowed_path)]


class Allowance(Strict):
    """One deliberate local addition: a path the baseline accepts as it is (never repaired)."""

    path: AllowedPath = Field(description="The file, unit file, drop-in or enablement link, by its full path.",
                              examples=["/etc/systemd/system/getty.target.wants/console-getty.service"])
    reason: Annotated[str, AfterValidator(_check_reason)] = Field(
        description="Why the host holds it (shown in every preview and drift report).",
        examples=["nspawn console: the sandbox's containers log in on /dev/console"])


class BaselineSection(Strict):
    """The whole host held against Debian's packages plus this repository's declaration
    (operations/baseline/deploy.py): a file, unit, drop-in, key, group member or listener in the
    places that decide how the host runs or who gets in is declared, allowed here, or drift."""

    allow: list[Allowance] = Field(
        default=[], description="Deliberate local additions, each with a reason. Exact paths only: no pattern, no "
        "whole directory, no authorized_keys (keys are declared with their account).",
        examples=[[{"path": "/etc/cron.d/vendor-agent", "reason": "the hosting provider's monitoring agent"}]])
    tls_min_days: int = Field(
        default=20, ge=1, le=80, description="A served certificate with fewer days left is drift (and renewed).",
        examples=[20])
