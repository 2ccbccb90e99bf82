"""The baseline engine's settings: the contract between the converge (operations/baseline/deploy.py
builds them from the whole declaration) and the engine (takes them as its argument). Standard
library only; an unknown, missing or mistyped key is refused (engine_common/contract.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine_common import contract


@dataclass(frozen=True)
class Unit:
    """A unit this repository declares: who it runs as, and the drop-ins it may have (its own)."""

    name: str
    user: str = ""  # "" : not checked (a unit of a package this repo only enables)
    group: str = ""
    drop_ins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Account:
    """A login this repository declares, with the only keys its authorized_keys may hold
    (``keys`` None: not declared yet, so the keys found are reported naming ``option``, never removed)."""

    name: str
    home: str
    keys: list[str] | None = None
    option: str = ""  # the option that declares these keys (named in the report)


@dataclass(frozen=True)
class Port:
    """A listening TCP socket the declaration accounts for: ``address`` "*" for any address."""

    port: int
    address: str = "*"
    owner: str = ""  # what listens (for the report)


@dataclass(frozen=True)
class Allowed:
    """A deliberate local addition, declared with a reason (the model's baseline.allow)."""

    path: str
    reason: str


@dataclass(frozen=True)
class TlsSite:
    name: str
    port: int
    ca_bundle: str
    key_path: str


@dataclass(frozen=True)
class BaselineSettings:
    """What the host may hold besides Debian's packages: everything this repository declares."""

    host: str
    files: list[str]  # every file this repository writes (their contents are checked by their own operations)
    directories: list[str]  # data and configuration directories it declares (their contents are the apps')
    units: list[Unit]
    enabled: list[str]  # units it enables (the links in *.wants/ it makes)
    accounts: list[Account]
    privileged_groups: dict[str, list[str]]  # group -> the members it declares (sudo: the admin)
    ports: list[Port]
    allowed: list[Allowed]
    tls: list[TlsSite]
    tls_min_days: int
    quarantine: str  # where a repair moves what it takes away (root 0700)
    state: str  # the engine's own records (the package check's cache)


def settings_from(text: str) -> BaselineSettings:
    """The settings from their JSON text (the engine's argument), checked key by key."""
    return contract.load(BaselineSettings, json.loads(text))
