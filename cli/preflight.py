"""`make preflight [INVENTORY=inventory.py]`: every prerequisite of a run against a stack, checked
before anything changes, each failure with its fix. Exit 0 every check passed, 1 one failed.

The checks, in the order a first production run meets them:
  secrets     every secret the declared configuration needs, for all groups at once
              (`make secrets-template` writes the skeleton), and each sudo password
  confirm     the items group_data marks to confirm on the server (``confirm``) that this stack
              still has at their declared value
  host key    each host's key pinned in the known-hosts file, checked strictly
  reachable   each host's SSH port answers, and the login works (Tailscale for the LAN host)
  root        root through sudo with the password (the LAN admin), or the root login
  deploy key  each app's deploy key is on the host and the git host lets it read the declared revision
  name        each TLS site's name resolves to its host, as the ACME server resolves it
  acme        the ACME directory answers from the host; the account is registered, or will be

Only ``secrets`` and ``confirm`` read nothing but files; the rest read a host (nothing is written).

Usage: python -m cli.preflight INVENTORY [--host NAME|GROUP] [--format text|json]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iac import sudo
from iac.errors import ConfigError
from iac.ssh import run_as_root, ssh_argv
from operations.host import HostConfig
from operations.tls.deploy import tls_domains
from stack.inventory import known_hosts_file
from stack.load import GROUPS, build_host_config, confirm_items, secret_needs
from stack.secrets import SecretsFile, value_at

TIMEOUT = 10  # seconds for one probe (a host that does not answer by then is reported, not waited for)


@dataclass
class Finding:
    """One check of one subject: what was found, and the fix when it failed."""

    check: str
    subject: str
    ok: bool
    detail: str
    fix: str = ""


# ---- what the files say --------------------------------------------------------------------

def secrets(source: Any, hosts: list[tuple[str, str, dict]]) -> list[Finding]:
    """Every required secret of every group at once, and the sudo password of each host reached
    through sudo (stored, or typed at a terminal)."""
    if not isinstance(source, SecretsFile):
        return [Finding("secrets", "inventory", False, "the inventory names no secrets file",
                        "build the inventory's entries with stack.inventory.group_entries(..., secrets=...)")]
    where = str(source.path) if source.path else "IAC_SECRETS_FILE (not set)"
    out = []
    for group in GROUPS:
        _, required = secret_needs(group)
        missing = [".".join(p) for p in required if value_at(source.data.get(group, {}), p) in (None, "")]
        if missing:
            out.append(Finding("secrets", group, False, f"missing in {where}: {', '.join(missing)}",
                               "fill them in: `make secrets-edit INVENTORY=...` (the stack's encrypted file; "
                               "`make secrets-template` is the skeleton), or a file named by IAC_SECRETS_FILE"))
        else:
            out.append(Finding("secrets", group, True, f"all {len(required)} required secrets in {where}"))
    for group, name, data in hosts:
        if not data.get("_sudo"):
            continue
        path = f"{group}.{'.'.join(sudo.SECRET_PATH)}"
        stored = source.connection_secret(group, sudo.SECRET_PATH) if source.path else None
        if stored:
            out.append(Finding("secrets", name, True, f"sudo password in {where} ({path})"))
        elif sys.stdin.isatty():
            out.append(Finding("secrets", name, True, f"sudo password typed at the terminal when needed ({path} "
                                                      "not stored)"))
        else:
            out.append(Finding("secrets", name, False, f"no sudo password for {data.get('ssh_user')}: {path} is not "
                                                       f"in {where} and no terminal asks for it",
                               f"add {path} to the secrets file, or run at a terminal"))
    return out


def option_value(config: HostConfig, path: tuple[str, ...]) -> Any:
    node: Any = config
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
    return node


def confirm(hosts: list[tuple[str, str, dict]]) -> list[Finding]:
    """Each item group_data asks to confirm on the server, open while this stack still has the
    value group_data declares (a stack of its own, the sandbox, sets its own)."""
    out = []
    for group, name, data in hosts:
        items = confirm_items(group)
        declared = build_host_config(group, name) if items else None
        for option, how in items.items():
            path = tuple(option.split("."))
            if declared is not None and option_value(declared, path) == option_value(data["config"], path):
                out.append(Finding("confirm", f"{name} {option}", False,
                                   f"not confirmed: group_data/{group}.py lists it under 'confirm' ({how})",
                                   f"confirm it on the server ({how}), set {option} in group_data/{group}.py, then "
                                   "remove its entry from 'confirm'"))
        if not any(f.subject.startswith(f"{name} ") for f in out):
            out.append(Finding("confirm", name, True, f"{len(items)} item(s) to confirm, none open"
                               if items else "nothing to confirm"))
    return out


# ---- what the hosts say --------------------------------------------------------------------

def _port(data: Mapping[str, Any]) -> int:
    return int(data.get("ssh_port") or 22)


def host_key(name: str, data: Mapping[str, Any]) -> Finding:
    """The host's key is pinned (never trusted on first use) and checked strictly."""
    file = Path(data.get("ssh_known_hosts_file") or known_hosts_file())
    host, port = str(data["ssh_hostname"]), _port(data)
    entry = host if port == 22 else f"[{host}]:{port}"
    scan = f"ssh-keyscan -p {port} {shlex.quote(host)} > /tmp/{name}.keys; ssh-keygen -lf /tmp/{name}.keys"
    fix = (f"{scan}; compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server's own console, "
           f"then append /tmp/{name}.keys to {file} (IAC_KNOWN_HOSTS_FILE)")
    if data.get("ssh_strict_host_key_checking") != "yes":
        return Finding("host key", name, False, "the inventory does not check host keys strictly",
                       "build the connection with stack.inventory.strict_ssh()")
    found = subprocess.run(["ssh-keygen", "-F", entry, "-f", str(file)], capture_output=True, text=True, check=False)
    if found.returncode != 0 or not found.stdout.strip():
        return Finding("host key", name, False, f"no key for {entry} in {file}", fix)
    return Finding("host key", name, True, f"pinned in {file}")


def reachable(name: str, data: Mapping[str, Any], config: HostConfig) -> list[Finding]:
    """The SSH port answers, and the inventory's login works."""
    host, port = str(data["ssh_hostname"]), _port(data)
    tailscale = config.tailscale is not None and config.tailscale.enabled
    hint = (f"{name} is reached over Tailscale: `tailscale status` on this machine must list {host}, and "
            f"`tailscale ping {host}` answer (`tailscale up` here; on the server `systemctl status tailscaled`)"
            if tailscale else f"check the address {host} in the inventory, and that port {port} is open to this "
                              "machine (firewall.ssh_from, the provider's firewall)")
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except OSError as e:
        return [Finding("reachable", name, False, f"{host}:{port}: {e.strerror or type(e).__name__}", hint)]
    login = subprocess.run([*ssh_argv(data, connect_timeout=TIMEOUT), "true"], capture_output=True, text=True,
                           check=False, timeout=TIMEOUT * 3)
    if login.returncode != 0:
        said = (login.stderr.strip().splitlines() or ["no answer"])[-1][:200]
        return [Finding("reachable", name, True, f"{host}:{port} answers"),
                Finding("reachable", name, False, f"login as {data.get('ssh_user')} refused: {said}",
                        "the key this machine uses (ssh_key, else the agent's) must be in "
                        f"{'admin.ssh_authorized_keys' if data.get('_sudo') else 'ssh.root_authorized_keys'} "
                        "on the server")]
    return [Finding("reachable", name, True, f"{host}:{port} answers; {data.get('ssh_user')} logs in")]


def root(name: str, data: Mapping[str, Any]) -> Finding:
    """Root, as every run needs it: through sudo with the password, or the root login."""
    try:
        out = run_as_root(data, "id -u", timeout=TIMEOUT * 3)
    except ConfigError as e:  # no password stored, none typed
        return Finding("root", name, False, str(e), f"add the sudo password to the secrets file ({e})")
    if out.returncode == 0 and out.stdout.strip() == "0":
        how = f"through sudo as {data.get('ssh_user')}, its password on stdin" if data.get("_sudo") else "logs in"
        return Finding("root", name, True, f"root {how}")
    said = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1][:200]
    return Finding("root", name, False, f"not root: {said}",
                   f"{data.get('ssh_user')} must be in group sudo on the server, and the password in the secrets "
                   f"file ({'.'.join(sudo.SECRET_PATH)} of its group) must be its password"
                   if data.get("_sudo") else "the inventory logs in as root: ssh.root_authorized_keys holds its key")


def _over_ssh(url: str) -> bool:
    return url.startswith(("ssh://", "git@")) or ("@" in url.split("/", 1)[0] and ":" in url)


def deploy_keys(name: str, data: Mapping[str, Any], config: HostConfig) -> list[Finding]:
    """Each app's deploy key is on the host and reads the declared revision from its git host,
    as the release engine will (the app's user, the key, the pinned host key)."""
    out = []
    for app_name, app in config.apps.items():
        url = app.source.url
        if not _over_ssh(url):
            out.append(Finding("deploy key", f"{name} {app_name}", True, f"{url} needs no key"))
            continue
        p = config.app_paths(app_name)
        ssh = (f"ssh -i {p.deploy_key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
               f"-o UserKnownHostsFile={p.known_hosts} -o ConnectTimeout={TIMEOUT}")
        probe = (f"test -f {shlex.quote(p.deploy_key)} || {{ echo NO-KEY; exit 3; }}; "
                 f"runuser -u {shlex.quote(app.user)} -- env GIT_SSH_COMMAND={shlex.quote(ssh)} "
                 f"git ls-remote --exit-code {shlex.quote(url)} {shlex.quote(app.source.revision)} >/dev/null")
        got = run_as_root(data, probe, timeout=TIMEOUT * 6)
        subject = f"{name} {app_name}"
        if got.returncode == 0:
            out.append(Finding("deploy key", subject, True, f"reads {app.source.revision} of {url}"))
        elif "NO-KEY" in got.stdout:
            out.append(Finding("deploy key", subject, False, f"no deploy key at {p.deploy_key} yet",
                               "make deploy-keys INVENTORY=... (makes the key on the host and prints it), then add "
                               f"it to {url}'s deploy keys, read-only"))
        elif got.returncode == 2:
            out.append(Finding("deploy key", subject, False, f"{url} has no {app.source.revision}",
                               f"set apps.{app_name}.source.revision to a branch, tag or commit of {url}"))
        else:
            said = (got.stderr.strip().splitlines() or [f"exit {got.returncode}"])[-1][:200]
            out.append(Finding("deploy key", subject, False, f"the git host refuses the key: {said}",
                               f"add the key (`make deploy-keys` prints it) to {url}'s deploy keys, read-only; and "
                               f"apps.{app_name}.source.host_key must be the git host's key"))
    return out


def _addresses(host: str) -> set[str]:
    try:
        return {str(a[4][0]) for a in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()


def names(name: str, data: Mapping[str, Any], config: HostConfig, acme_dns: str | None) -> list[Finding]:
    """Each TLS site's name resolves to the host, as the ACME server resolves it (``acme_dns``: its
    DNS server as ``ip:port``; None: the public DNS, through this machine's resolver)."""
    import dns.exception  # only preflight resolves names
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=acme_dns is None)
    if acme_dns is not None:
        ip, _, port = acme_dns.rpartition(":")
        resolver.nameservers, resolver.port = [ip], int(port)
    resolver.lifetime = TIMEOUT
    host = _addresses(str(data["ssh_hostname"]))
    out = []
    for domain in tls_domains(config):
        try:
            found = {r.to_text() for r in resolver.resolve(domain, "A")}
        except dns.exception.DNSException as e:
            found, why = set(), type(e).__name__
        else:
            why = ""
        if found & host:
            out.append(Finding("name", domain, True, f"resolves to {', '.join(sorted(found))} ({name})"))
        else:
            out.append(Finding("name", domain, False,
                               f"resolves to {', '.join(sorted(found)) or 'nothing'}{f' ({why})' if why else ''}; "
                               f"{name} is {', '.join(sorted(host)) or data['ssh_hostname']}",
                               f"point the A record of {domain} at {', '.join(sorted(host)) or 'the host'} "
                               "(the ACME server checks the name there)"))
    return out


ACME_PROBE = r"""
import json, ssl, sys, urllib.request
ca = sys.stdin.read()
context = ssl.create_default_context(cadata=ca) if ca.strip() else ssl.create_default_context()
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]), context=context) as answer:
    directory = json.load(answer)
print("ok" if isinstance(directory, dict) and "newAccount" in directory else "not an ACME directory")
"""


def acme(name: str, data: Mapping[str, Any], config: HostConfig) -> list[Finding]:
    """The ACME directory answers from the host (where certbot runs), and the account: registered
    there, or registered by the first run with the declared e-mail."""
    if config.tls is None or not tls_domains(config):
        return []
    tls = config.tls
    server = urlsplit(tls.acme_directory)
    accounts = f"/etc/letsencrypt/accounts/{server.netloc}{server.path.rstrip('/')}"
    probe = (f"python3 -c {shlex.quote(ACME_PROBE)} {shlex.quote(tls.acme_directory)} {TIMEOUT} 2>&1 | tail -1; "
             f"ls {shlex.quote(accounts)} 2>/dev/null | head -1")
    got = run_as_root(data, probe, timeout=TIMEOUT * 3, input=tls.acme_ca_bundle or "")
    lines = got.stdout.strip().splitlines()
    if not lines or lines[0] != "ok":
        said = (lines[0] if lines else got.stderr.strip()[-200:])[:200]
        return [Finding("acme", name, False, f"{tls.acme_directory} does not answer from {name}: {said}",
                        "the host must reach the ACME server over HTTPS (outgoing 443; tls.acme_directory; "
                        "tls.acme_ca_bundle for a private CA)")]
    account = lines[1] if len(lines) > 1 else ""
    return [Finding("acme", name, True, f"{tls.acme_directory} answers; " + (
        f"account {account[:12]} registered" if account else f"the first run registers {tls.email}"))]


# ---- the whole preflight -------------------------------------------------------------------

def load(inventory: str) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """The inventory module's values (its secrets source, its ACME DNS) and its hosts."""
    values = runpy.run_path(inventory)
    hosts = [(g, name, data) for g, entries in values.items() if g in GROUPS and isinstance(entries, list)
             for name, data in entries]
    return values, hosts


def preflight(inventory: str, only: str | None = None) -> list[Finding]:
    values, hosts = load(inventory)
    chosen = [h for h in hosts if only in (None, h[0], h[1])]
    if not chosen:
        raise ConfigError(f"{inventory}: no host or group {only!r} (known: "
                          f"{', '.join(sorted({h[0] for h in hosts} | {h[1] for h in hosts}))})")
    out = secrets(values.get("_secrets"), chosen) + confirm(chosen)
    for _group, name, data in chosen:
        config: HostConfig = data["config"]
        key = host_key(name, data)
        out.append(key)
        reach = reachable(name, data, config)
        out += reach
        if not key.ok or not all(f.ok for f in reach):
            out.append(Finding("root", name, False, "not checked: the host cannot be reached", "see above"))
            continue
        r = root(name, data)
        out.append(r)
        if r.ok:
            out += deploy_keys(name, data, config) + acme(name, data, config)
        out += names(name, data, config, values.get("_acme_dns"))
    return out


def text(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'} {f.check:<10} {f.subject}: {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"     fix: {f.fix}")
    failed = sum(not f.ok for f in findings)
    lines.append(f"preflight: {'all ' + str(len(findings)) + ' checks passed' if not failed else f'{failed} failed'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--host", help="one host or group (default: all)")
    parser.add_argument("--format", choices=["text", "json"], default=os.environ.get("FORMAT") or "text")
    args = parser.parse_args(argv)
    try:
        findings = preflight(args.inventory, args.host)
    except ConfigError as e:
        print(f"preflight: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"ok": all(f.ok for f in findings), "checks": [asdict(f) for f in findings]}, indent=2))
    else:
        print(text(findings))
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
