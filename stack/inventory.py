"""Building pyinfra inventory entries from validated configuration.

Both inventories (``inventory.py`` for production, ``sandbox/inventory.py``) build each group
from the hosts group_data declares (``hosts`` in ``group_data/<group>.py``, read by
``stack.load.declared_hosts``); they differ only in connection details and in the option paths
listed in ``ALLOWED_OVERRIDES``. Anything else a sandbox overrides is refused when the inventory
loads, and a test compares the two validated models field by field. A sandbox may add replicas
of a group's hosts (``hosts`` in its overrides: ``make bench HOSTS=N``); production cannot.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iac import pyinfra_ext, sudo
from iac.debian import next_release
from iac.pyinfra_ext import sudo_staging
from operations.host import HostConfig
from stack.load import (
    GROUP_DATA,
    GROUPS,
    HOSTS_KEY,
    ConfigError,
    build_host_config,
    declared_hosts,
    deep_merge,
    read_group_file,
    read_stack_values,
)
from stack.secrets import SecretsFile
from stack.upgrade import UPGRADE_ENV, upgrade_target

__all__ = ["GROUPS", "group_entries", "host_entry", "known_hosts_file", "strict_ssh"]


# Option paths (fnmatch patterns on the dotted path) a non-production stack may set differently,
# and why. Keep this list short: every entry is a place where the sandbox does not prove
# production.
ALLOWED_OVERRIDES: dict[str, str] = {
    "admin.ssh_authorized_keys": "the sandbox logs in with its own throwaway key",
    "apps.*.source.url": "fixture repositories on the sandbox's git forge instead of GitHub",
    "apps.*.source.host_key": "the forge's host key instead of GitHub's",
    "apps.*.source.revision": "tests deploy the fixtures' v1, v2 and broken revisions",
    "apps.*.settings_env.secret_key_fallbacks": "the LAN fixture apps read DJANGO_SECRET_KEY_FALLBACKS (a key "
                                                "rotation keeps sessions); production's apps are declared "
                                                "without it until their settings read one",
    "host.debian": "each sandbox host runs the release its disk was made from (SANDBOX_DEBIAN; the upgrade "
                   "drill's new host runs the next one)",
    "tls.acme_directory": "pebble instead of Let's Encrypt",
    "tls.acme_ca_bundle": "pebble's HTTPS certificate is signed by the sandbox's own CA",
    "tls.issuer_ca_bundle": "pebble issues under a root of its own, made anew each time it starts",
    "ssh.root_authorized_keys": "the sandbox logs in as root with its own throwaway key",
    "baseline.allow": "what systemd-nspawn's image holds that a VPS does not (its console getty)",
    "network.address": "the sandbox's LAN host sits in the sandbox subnet, not 192.168.1.0/24",
    "network.gateway": "the sandbox subnet's gateway (the machine)",
    "network.dns": "the machine's resolver: there is no 192.168.1.1 here",
    "node.source": "NodeSource's repository cannot be reached from here: Debian's nodejs instead",
    "tailscale.enabled": "Tailscale's repository cannot be reached from here",
    "backups.local.disk_uuid": "the sandbox's own dump disk (an ext4 image bound into the LAN host)",
    "backups.offsite.*": "restic repositories on the sandbox's S3 stand-in (moto) instead of DigitalOcean "
                         "Spaces; the public host's offsite copy is on in the sandbox only, until production "
                         "has a bucket for it",
}

# pyinfra connection keys an inventory may set per host (not part of the model)
CONNECTION_KEYS = {
    "ssh_hostname", "ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file",
    "ssh_strict_host_key_checking", "ssh_config_file", "ssh_connect_retries",
    "ssh_connect_retry_min_delay", "ssh_connect_retry_max_delay", "_sudo", "_sudo_user",
}


def known_hosts_file() -> Path:
    """The file holding production's pinned SSH host keys: ``IAC_KNOWN_HOSTS_FILE``, else
    ``~/.ssh/known_hosts`` (where CI's drift job writes the ``IAC_KNOWN_HOSTS`` secret)."""
    return Path(os.environ.get("IAC_KNOWN_HOSTS_FILE") or Path.home() / ".ssh" / "known_hosts").expanduser()


def strict_ssh(required: bool) -> dict[str, str]:
    """Connection keys that make every host prove its key against ``known_hosts_file()``: a host
    whose key is missing or different is refused, never trusted on first use (pyinfra's default is
    ``accept-new``). ``required`` when pyinfra really runs: a missing or empty file stops the run
    before any connection, naming the file.

    Example: ``{"ssh_hostname": "72.61.148.117", **strict_ssh(required=True)}``"""
    path = known_hosts_file()
    if required and not (path.is_file() and path.stat().st_size):
        raise ConfigError(f"no pinned SSH host keys in {path}: production connects only to hosts whose keys are "
                          "known (set IAC_KNOWN_HOSTS_FILE, docs/first-run.md)")
    return {"ssh_strict_host_key_checking": "yes", "ssh_known_hosts_file": str(path)}


def _leaf_paths(values: Mapping[str, Any], prefix: tuple = ()) -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.extend(_leaf_paths(value, prefix + (key,)))  # an empty mapping sets nothing
        else:
            out.append(".".join(prefix + (key,)))
    return out


def differing_paths(a: Mapping[str, Any], b: Mapping[str, Any]) -> set[str]:
    """Dotted option paths whose values differ between two model dumps."""
    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, Mapping) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a), flat(b)
    return {p for p in fa.keys() | fb.keys() if fa.get(p) != fb.get(p)}


def unexplained_differences(sandbox: Mapping[str, Any], production: Mapping[str, Any],
                            secret: set[str]) -> set[str]:
    """Differences between two stacks' models that ALLOWED_OVERRIDES does not account for."""
    return {
        p for p in differing_paths(sandbox, production) - secret
        if not any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat + ".*") for pat in ALLOWED_OVERRIDES)
    }


def check_overrides(stack: str, overrides: Mapping[str, Any], declared: Mapping[str, Any] | None = None) -> None:
    """Refuse overrides outside ALLOWED_OVERRIDES. Under ``hosts``, a host the group declares is
    held to the same list; a host it does not declare is a replica only this stack runs (its
    values are its own: it has no production counterpart to differ from)."""
    flat = {k: v for k, v in overrides.items() if k != HOSTS_KEY}
    paths = _leaf_paths(flat)
    for name, values in (overrides.get(HOSTS_KEY) or {}).items():
        if declared is None or name in declared:
            paths += _leaf_paths(values or {})
    bad = [
        p for p in paths
        if not any(fnmatch.fnmatchcase(p, pat) or p.startswith(pat + ".") for pat in ALLOWED_OVERRIDES)
    ]
    if bad:
        raise ConfigError(
            f"stack {stack}: overrides of {', '.join(bad)} are not allowed; a stack may differ "
            f"from production only in: {', '.join(ALLOWED_OVERRIDES)} (stack/inventory.py)"
        )


class StalePin(ConfigError):
    """A stack values file pins an app nobody declares; ``path`` is that file (`make unpin` mends it)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def stale_pins(path: Path, group: str, pinned: Mapping[str, Any], overrides: Mapping[str, Any],
               group_data: Path = GROUP_DATA) -> None:
    """Refuse a stack's pin (``make release``) of an app that neither group_data nor the stack's
    overrides declare any more: it would be taken for half an app ("required option ... user")."""
    apps = pinned.get("apps", {}) if isinstance(pinned.get("apps"), Mapping) else {}
    declared = set(read_group_file(group_data / f"{group}.py").get("apps", {}) or {}) | set(overrides.get("apps", {}))
    stale = sorted(set(apps) - declared)
    if stale:
        first = stale[0]
        revision = apps[first].get("source", {}).get("revision", "?") if isinstance(apps[first], Mapping) else "?"
        raise StalePin(path, f"{path}: pins {group}.apps.{first}.source.revision = {revision!r} (`make release`), but "
                          f"group_data/{group}.py declares no app {first!r} any more: drop the pin with "
                          f"`make unpin APP={first}`" + (f" (and {', '.join(stale[1:])})" if stale[1:] else ""))


def host_entry(
    stack: str,
    group: str,
    name: str,
    connection: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    secrets: Any = None,
    stack_values: Path | None = None,
    group_data: Path = GROUP_DATA,
    upgrade: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One pyinfra inventory entry ``(name, data)`` with the validated config attached.

    + name: the host's inventory name, a key of ``hosts`` in group_data/<group>.py (or, in a
      non-production stack, of ``hosts`` in its overrides: a replica)
    + connection: pyinfra connection keys (``ssh_hostname``, ``ssh_user``, ...)
    + overrides: a non-production stack's differences from production (ALLOWED_OVERRIDES)
    + secrets: where secrets come from (stack.secrets.SecretsFile); None: offline placeholders
    + stack_values: a non-production stack's own values file (what `make release` pins there,
      ``stack.load.pin_stack_revision``), applied under ``overrides`` and held to the same
      ALLOWED_OVERRIDES. Production keeps every value in group_data/.
    + upgrade: the host is the new machine of an upgrade (stack/upgrade.py): declared on the
      release after its own, ``upgrade`` set in its data

    Example: ``host_entry("production", "public", "srv1178562", {"ssh_hostname": "72.61.148.117"})``"""
    if "_sudo_password" in connection:
        raise ConfigError(f"stack {stack}, group {group}: a connection never carries _sudo_password (pyinfra would "
                          f"put it in a command line): it comes from the secrets file, "
                          f"{group}.{'.'.join(sudo.SECRET_PATH)}, or is typed (iac/sudo.py)")
    unknown = set(connection) - CONNECTION_KEYS
    if unknown:
        raise ConfigError(f"stack {stack}, group {group}: unknown connection keys {sorted(unknown)}")
    extra: dict[str, Any] = {}
    if stack_values is not None:
        if stack == "production":
            raise ConfigError("the production stack takes its values from group_data/ only")
        extra = {"stack_values": str(stack_values)}
        pinned = read_stack_values(stack_values).get(group, {})
        stale_pins(stack_values, group, pinned, overrides or {}, group_data)
        overrides = deep_merge(pinned, overrides or {})
    if overrides and stack != "production":
        check_overrides(stack, overrides, declared_hosts(group, group_data))
    elif overrides:
        raise ConfigError("the production stack takes its values from group_data/ only")
    config: HostConfig = build_host_config(group, name, overrides, secrets, group_data)
    if upgrade:
        try:
            to = next_release(config.host.debian)
        except ValueError as exc:
            raise ConfigError(f"{UPGRADE_ENV}: {name}: {exc}") from None
        config = config.model_copy(update={"host": config.host.model_copy(update={"debian": to.version})})
        extra["upgrade"] = True
    if connection.get("_sudo"):
        # through sudo, pyinfra stages uploads in the login's private directory (never /tmp), and
        # sudo's password comes from the secrets file or the terminal, on stdin (iac/sudo.py)
        extra.update(sudo_staging.host_data(connection))
        extra[sudo.DATA_KEY] = sudo_password(group, name, connection, secrets)
        pyinfra_ext.install_sudo()  # for every pyinfra command on this inventory, not only deploy.py
    return name, {**connection, "config": config, "stack": stack, "group": group, **extra}


def sudo_password(group: str, name: str, connection: Mapping[str, Any], secrets: Any) -> sudo.SudoPassword:
    """The sudo password of a host reached through sudo: stored in ``secrets`` (a SecretsFile) at
    ``<group>.connection.sudo_password``, else typed when first needed."""
    if isinstance(secrets, SecretsFile):
        stored, where = secrets.connection_secret(group, sudo.SECRET_PATH), secrets.where(group, sudo.SECRET_PATH)
    else:  # offline: nothing stored; typed if a command ever needs it
        stored, where = None, f"{group}.{'.'.join(sudo.SECRET_PATH)} in the secrets file (none given)"
    return sudo.SudoPassword(name, str(connection.get("ssh_user") or "root"), stored, where)


def group_entries(
    stack: str,
    group: str,
    connections: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
    secrets: Any = None,
    stack_values: Path | None = None,
    group_data: Path = GROUP_DATA,
) -> list[tuple[str, dict[str, Any]]]:
    """Every host of a group, in the order group_data declares them (then a non-production
    stack's replicas), each with its connection.

    + connections: inventory name -> connection keys; or a function of the name (the sandbox
      derives addresses). A declared host without a connection, or a connection for a host the
      group does not declare, is an error naming both files.

    Example: ``public = group_entries("production", "public", {"srv1178562": {"ssh_hostname": "72.61.148.117"}})``"""
    if group not in GROUPS:
        raise ConfigError(f"unknown group {group!r} (groups: {', '.join(GROUPS)})")
    names = list(declared_hosts(group, group_data))
    own = read_stack_values(stack_values).get(group, {}) if stack_values is not None else {}
    for values in (own, overrides or {}):
        names += [n for n in (values.get(HOSTS_KEY) or {}) if n not in names]
    if isinstance(connections, Mapping):
        missing = [n for n in names if n not in connections]
        unknown = [n for n in connections if n not in names]
        if missing or unknown:
            raise ConfigError(
                f"stack {stack}, group {group}: "
                + "; ".join(filter(None, [
                    missing and f"no connection for {', '.join(missing)} (declared under '{HOSTS_KEY}' in "
                                f"group_data/{group}.py): add its address to the inventory",
                    unknown and f"connection for {', '.join(unknown)}, which group_data/{group}.py does not "
                                f"declare (its hosts: {', '.join(names)}): add it under '{HOSTS_KEY}' there, "
                                "or fix the name",
                ])))
        connection_of = connections.__getitem__
    else:
        connection_of = connections
    upgrade = upgrade_target(GROUPS)
    if upgrade is not None and upgrade.group == group:
        if len(names) != 1:
            raise ConfigError(f"{UPGRADE_ENV}: group {group} has {len(names)} hosts ({', '.join(names)}); an upgrade "
                              "rebuilds one host at a time")
        old = connection_of(names[0])
        if str(old.get("ssh_hostname")) == upgrade.address:
            raise ConfigError(f"{UPGRADE_ENV}: {upgrade.address} is where {names[0]} serves today; an upgrade "
                              "rebuilds the host on a new machine: give that machine's address")
        return [host_entry(stack, group, names[0], {**old, "ssh_hostname": upgrade.address}, overrides, secrets,
                           stack_values, group_data, upgrade=True)]
    return [host_entry(stack, group, n, connection_of(n), overrides, secrets, stack_values, group_data)
            for n in names]
