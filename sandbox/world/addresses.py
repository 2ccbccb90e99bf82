"""Addresses and names: what the subnet and SANDBOX_NAME make of each host, the stand-ins'
endpoints and the sandbox's files. Nothing here changes the machine."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import WorldError


@dataclass(frozen=True)
class HostSpec:
    """One container: its role name, subnet index and interface name inside the container."""

    role: str
    index: int
    ifname: str
    veth_suffix: str


HOSTS = (
    HostSpec("public", 1, "eth0", "pub"),
    HostSpec("lan", 2, "eno1", "lan"),
    HostSpec("forge", 3, "eth0", "git"),
)

# Replicas of the public host (``make bench HOSTS=N``): role publicN (N = 2..MAX_PUBLIC_HOSTS),
# subnet index 10+N, veth <name>-pN. The LAN host has a dump disk of its own and is not replicated.
REPLICA_RE = re.compile(r"^public([2-9]|[1-3][0-9])$")
MAX_PUBLIC_HOSTS = 39


def replica_spec(role: str) -> HostSpec | None:
    m = REPLICA_RE.fullmatch(role)
    return HostSpec(role, 10 + int(m.group(1)), "eth0", f"p{m.group(1)}") if m else None


class Addresses:
    """Addresses, names and paths of a sandbox, all derived from its name, subnet and directory."""

    def octets(self) -> tuple[int, int]:
        a, b, _, _ = self.subnet.network_address.packed
        return a, b

    @property
    def svc_ip(self) -> str:
        a, b = self.octets()
        return f"{a}.{b}.0.1"

    @property
    def s3_ip(self) -> str:
        """The S3 stand-in's own address: a test can make S3 unreachable while alerts still go out."""
        a, b = self.octets()
        return f"{a}.{b}.0.2"

    def host_ip(self, role: str) -> str:
        a, b = self.octets()
        return f"{a}.{b}.{self.spec(role).index}.2"

    def gateway_ip(self, role: str) -> str:
        a, b = self.octets()
        return f"{a}.{b}.{self.spec(role).index}.1"

    def host_net(self, role: str) -> str:
        a, b = self.octets()
        return f"{a}.{b}.{self.spec(role).index}.0/24"

    @staticmethod
    def spec(role: str) -> HostSpec:
        for h in HOSTS:
            if h.role == role:
                return h
        if (replica := replica_spec(role)) is not None:
            return replica
        raise WorldError(f"unknown sandbox host {role!r}")

    def replica_roles(self) -> list[str]:
        """The public host's replicas this sandbox has made (recorded in its ledger)."""
        return [self.replica_role(n) for n in range(2, int(self.load().get("public_hosts", 1)) + 1)]

    def host_roles(self) -> list[str]:
        """Every host of this sandbox: the three of ``HOSTS``, then the replicas it has made."""
        return [h.role for h in HOSTS] + self.replica_roles()

    @staticmethod
    def replica_role(n: int) -> str:
        """The sandbox host (container) that is replica ``n`` (2, 3, ...) of the public host."""
        return f"public{n}"

    @staticmethod
    def replica_name(n: int) -> str:
        """The inventory name (and /etc/hostname) of the public host's replica ``n`` (2, 3, ...)."""
        return f"public-r{n}"

    @staticmethod
    def replica_domain(n: int) -> str:
        """Replica ``n``'s domain: resolved only by the sandbox's ACME DNS (challtestsrv)."""
        return f"r{n}.public.sandbox.test"

    def netns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def veth(self, role: str) -> str:
        return f"{self.name}-{self.spec(role).veth_suffix}"

    def rootfs(self, role: str) -> Path:
        return self.dir / "machines" / role

    @property
    def ssh_key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "ssh" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh" / "config"

    # stand-in endpoints (the sandbox inventory reads these)
    @property
    def acme_directory(self) -> str:
        return f"https://{self.svc_ip}:14000/dir"

    @property
    def acme_ca_file(self) -> Path:
        return self.dir / "pebble" / "listener-ca.pem"

    @property
    def acme_issuer_file(self) -> Path:
        """The root pebble issues under now (saved each time pebble is started)."""
        return self.dir / "pebble" / "issuer-root.pem"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.s3_ip}:9000"

    @property
    def s3_bucket(self) -> str:
        """The bucket every restic repository of this sandbox lives in (made with the stand-in)."""
        return f"iac-{self.name}"

    @property
    def webhook_base(self) -> str:
        return f"http://{self.svc_ip}:8099"

    @property
    def webhook_log(self) -> Path:
        return self.dir / "webhook" / "requests.jsonl"

    def repo_url(self, app: str) -> str:
        return f"ssh://git@{self.host_ip('forge')}/srv/git/{app}.git"

    def resolvers(self) -> list[str]:
        """The machine's DNS servers (what the hosts use: their resolv.conf is a copy)."""
        return [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
                if line.startswith("nameserver ")] or ["127.0.0.53"]

    def forge_host_key(self) -> str:
        pub = (self.rootfs("forge") / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        return f"{pub[0]} {pub[1]}"

    def secrets(self, **options: Any) -> Any:
        """The sandbox's stack of secrets (stack/secrets.py ``SecretsFile``, generated canaries),
        kept encrypted (``secrets.age``) to the identity the sandbox made for itself, as production's
        are to its operators' (stack/vault.py). A plaintext ``secrets.json`` from before is moved
        into it and removed. ``options``: SecretsFile's (``special``)."""
        from stack.secrets import SecretsFile
        from stack.vault import own_vault

        vault = own_vault(self.dir)
        plain = self.dir / "secrets.json"
        if plain.exists() and not vault.exists():
            vault.write(plain.read_bytes())
        plain.unlink(missing_ok=True)
        return SecretsFile(None, generate=True, vault=vault, **options)

    def secret_values(self) -> dict:
        """The sandbox's secrets, decrypted (what tests search outputs for; empty before any)."""
        from stack.vault import own_vault

        vault = own_vault(self.dir)
        return json.loads(vault.read()) if vault.exists() else {}
