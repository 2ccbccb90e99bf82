"""The local sandbox: real Debian 12 hosts under systemd-nspawn, and the stand-ins they talk to.

Everything this module creates is recorded in ``.sandbox/<name>/state.json`` *before* it is
created, so ``down`` can remove exactly that (and nothing else) in reverse order, even after a
half-finished ``up``. Processes are ended by PID only, and only when the PID still belongs to
the process that was started (its start time in /proc is recorded with it).

Layout for SANDBOX_SUBNET=10.213.0.0/16 (the default) and SANDBOX_NAME=sbx:

    10.213.0.1        on the machine's loopback: pebble, challtestsrv DNS, webhook
    10.213.0.2        on the machine's loopback: S3 (moto), an address of its own
    10.213.1.2        host "public" (netns sbx-public, veth sbx-pub  <-> eth0)
    10.213.2.2        host "lan"    (netns sbx-lan,    veth sbx-lan  <-> eno1)
    10.213.3.2        host "forge"  (netns sbx-forge,  veth sbx-git  <-> eth0): git over SSH

A sandbox keeps the subnet it was created with (state.json records it): ``up`` with another
SANDBOX_SUBNET is refused before anything changes.

Each host's process is a small supervisor (``boot-host ROLE --foreground``) that runs
systemd-nspawn and boots the container again when it reboots itself (nspawn exits 133), as a
real server comes back after ``reboot``; SIGTERM to it shuts the container down cleanly.

Usage: python -m sandbox.world up|down|status [--json]|ssh-config|register-key APP PUBKEY
                               |boot-host ROLE [--foreground]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_CACHE = Path(os.environ.get("SANDBOX_IMAGE_CACHE", "/var/cache/iac-sandbox/images"))

# The golden image recipe. Its hash names the cached image, so changing any of this builds a
# new image and never reuses a stale one. This is what a fresh Debian 12 server has: sshd,
# python3, systemd. Everything else is the converge's job.
IMAGE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
    "include": [
        "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
        "ca-certificates", "netbase", "procps",
    ],
    # bumped when the post-processing below changes
    "post": 3,
}


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


class WorldError(RuntimeError):
    pass


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


class World:
    """A named sandbox: its settings, its recorded resources and the operations on them."""

    def __init__(self, name: str | None = None, subnet: str | None = None) -> None:
        self.name = name or os.environ.get("SANDBOX_NAME") or "sbx"
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", self.name):
            raise WorldError(
                f"SANDBOX_NAME={self.name!r}: use 1-10 lower-case letters/digits starting with a "
                "letter (it prefixes interface names, which are limited to 15 characters)"
            )
        subnet = subnet or os.environ.get("SANDBOX_SUBNET") or "10.213.0.0/16"
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise WorldError(f"SANDBOX_SUBNET={subnet!r}: {exc}; use e.g. 10.213.0.0/16") from exc
        if self.subnet.prefixlen != 16 or not self.subnet.is_private:
            raise WorldError(
                f"SANDBOX_SUBNET={subnet!r}: give a private /16 such as 10.213.0.0/16; "
                "each host gets one /24 of it"
            )
        self.dir = REPO / ".sandbox" / self.name
        self.state_file = self.dir / "state.json"

    # ---- addresses and names -------------------------------------------------------------
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
        raise WorldError(f"unknown sandbox host {role!r}")

    def netns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def veth(self, role: str) -> str:
        return f"{self.name}-{self.spec(role).veth_suffix}"

    def rootfs(self, role: str) -> Path:
        return self.dir / "machines" / role

    # The LAN host's dump disk (the runbook's WD Red at /mnt/pg_backups): an ext4 image of its
    # own, loop-mounted on the machine and bound into the host, so "disk missing" is real.
    BACKUP_DISK_MB = 512
    BACKUP_DISK_TARGET = "/mnt/pg_backups"

    @property
    def backup_disk_image(self) -> Path:
        return self.dir / "disks" / "pg_backups.img"

    @property
    def backup_disk_mount(self) -> Path:
        return self.dir / "mnt" / "lan-pg_backups"

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
    def s3_endpoint(self) -> str:
        return f"http://{self.s3_ip}:9000"

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

    # ---- state -----------------------------------------------------------------------------
    def load(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"name": self.name, "subnet": str(self.subnet), "resources": []}

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def record(self, kind: str, **attrs) -> None:
        """Write down a resource before creating it (so a crash mid-way is still undone)."""
        state = self.load()
        entry = {"kind": kind, **attrs}
        if entry not in state["resources"]:
            state["resources"].append(entry)
            self.save(state)

    def forget(self, entry: dict) -> None:
        state = self.load()
        state["resources"] = [r for r in state["resources"] if r != entry]
        self.save(state)

    def recorded_subnet(self) -> ipaddress.IPv4Network | None:
        """The subnet this sandbox was created with (None while nothing of it exists)."""
        if not self.state_file.exists():
            return None
        state = self.load()
        if not state["resources"]:
            return None
        if "subnet" in state:
            return ipaddress.IPv4Network(state["subnet"])
        # a ledger written before the subnet was recorded: the stand-ins' address tells it
        for r in state["resources"]:
            if r["kind"] == "addr":
                return ipaddress.IPv4Network(r["cidr"], strict=False).supernet(new_prefix=16)
        return None

    def check_subnet(self) -> None:
        """Refuse to bring up an existing sandbox on another subnet (before anything changes).

        Its addresses, NAT rules, ssh config, pinned host keys and the hosts' own network
        configuration all derive from the subnet it was created with."""
        recorded = self.recorded_subnet()
        if recorded is not None and recorded != self.subnet:
            raise WorldError(
                f"sandbox {self.name} exists with SANDBOX_SUBNET={recorded} (recorded in {self.state_file}), "
                f"not SANDBOX_SUBNET={self.subnet}: its subnet cannot change while it exists. Either keep "
                f"SANDBOX_SUBNET={recorded}, or take it down first (`make sandbox-down SANDBOX_NAME={self.name}`: "
                f"down uses the recorded subnet) and then run `make sandbox SANDBOX_NAME={self.name} "
                f"SANDBOX_SUBNET={self.subnet}`"
            )

    def adopt_recorded_subnet(self) -> None:
        """For ``down`` and ``status``: the ledger's subnet wins over SANDBOX_SUBNET."""
        recorded = self.recorded_subnet()
        if recorded is not None and recorded != self.subnet:
            log(f"sandbox {self.name} was created with SANDBOX_SUBNET={recorded}; using that "
                f"(not {self.subnet})")
            self.subnet = recorded

    # The machine-wide registry of sandboxes (any checkout): name -> owner and subnet. /run is
    # emptied on reboot, as are the namespaces and links it describes.
    REGISTRY = Path("/run/iac-sandbox")

    @classmethod
    def registry_entries(cls) -> dict[str, dict]:
        """Live registrations; a stale one (its checkout is gone, or none of its network
        namespaces exists any more, e.g. after a crash) is removed so it cannot block a new run."""
        out = {}
        if cls.REGISTRY.is_dir():
            netns = set(run(["ip", "netns", "list"]).stdout.split())
            for f in cls.REGISTRY.glob("*.json"):
                entry = json.loads(f.read_text())
                owner_gone = not Path(entry["dir"]).is_dir()
                # a sandbox on its way up registers before it creates namespaces: give it time
                no_netns = (not any(n.startswith(f"{f.stem}-") for n in netns)
                            and time.time() - f.stat().st_mtime > 600)
                if owner_gone or no_netns:
                    why = "its checkout is gone" if owner_gone else "none of its namespaces exists"
                    log(f"removing stale registration of sandbox {f.stem!r} ({entry['dir']}): {why}")
                    f.unlink(missing_ok=True)
                    continue
                out[f.stem] = entry
        return out

    @classmethod
    def free_slot(cls, prefix: str = "sbx", avoid: tuple[str, ...] = ()) -> tuple[str, str]:
        """A sandbox name and /16 subnet that no registered sandbox and no route on this machine
        uses (for CI runs and tests that start a second sandbox beside a first)."""
        taken = cls.registry_entries()
        nets = [ipaddress.IPv4Network(e["subnet"]) for e in taken.values()]
        nets += [ipaddress.IPv4Network(a) for a in avoid]
        for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
            words = line.split()
            if words[:1] in (["local"], ["broadcast"]):
                words = words[1:]
            with contextlib.suppress(ValueError, IndexError):  # "default" and blank lines
                nets.append(ipaddress.IPv4Network(words[0], strict=False))
        name = next(f"{prefix}{i}" for i in range(2, 100) if f"{prefix}{i}" not in taken)
        for second in range(214, 250):
            candidate = ipaddress.IPv4Network(f"10.{second}.0.0/16")
            if not any(candidate.overlaps(n) for n in nets):
                return name, str(candidate)
        raise WorldError("no free 10.214-249.0.0/16 subnet on this machine")

    def claim(self) -> None:
        """Refuse a name or subnet another sandbox on this machine uses, then register ours."""
        for name, entry in self.registry_entries().items():
            mine = name == self.name and entry["dir"] == str(self.dir)
            if mine:
                continue
            if name == self.name:
                raise WorldError(
                    f"SANDBOX_NAME={self.name} is in use on this machine by {entry['dir']}; "
                    "take it down there (make sandbox-down) or pick another SANDBOX_NAME"
                )
            if ipaddress.IPv4Network(entry["subnet"]).overlaps(self.subnet):
                raise WorldError(
                    f"SANDBOX_SUBNET {self.subnet} overlaps sandbox {name!r} ({entry['subnet']}, "
                    f"{entry['dir']}); pick another, e.g. SANDBOX_SUBNET=10.214.0.0/16"
                )
        self.REGISTRY.mkdir(parents=True, exist_ok=True)
        (self.REGISTRY / f"{self.name}.json").write_text(
            json.dumps({"dir": str(self.dir), "subnet": str(self.subnet)}))

    def release(self) -> None:
        entry = self.registry_entries().get(self.name)
        if entry and entry["dir"] == str(self.dir):
            (self.REGISTRY / f"{self.name}.json").unlink()

    # ---- golden image ----------------------------------------------------------------------
    def image_dir(self) -> Path:
        key = hashlib.sha256(json.dumps(IMAGE_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
        return IMAGE_CACHE / key

    def ensure_image(self) -> Path:
        img = self.image_dir()
        rootfs = img / "rootfs"
        if (img / "complete").exists():
            log(f"golden image cached: {img}")
            return rootfs
        log(f"building golden image {img} (debootstrap, about 2 minutes)")
        if img.exists():
            shutil.rmtree(img)
        img.mkdir(parents=True)
        started = time.monotonic()
        r = IMAGE_RECIPE
        subprocess.run(
            ["debootstrap", f"--variant={r['variant']}", f"--include={','.join(r['include'])}",
             r["suite"], str(rootfs), r["mirror"]],
            check=True, stdout=subprocess.DEVNULL,
        )
        self._post_process_image(rootfs)
        (img / "recipe.json").write_text(json.dumps(IMAGE_RECIPE, indent=2))
        (img / "complete").write_text(f"{time.monotonic() - started:.0f}s\n")
        log(f"golden image built in {time.monotonic() - started:.0f}s")
        return rootfs

    @staticmethod
    def _post_process_image(rootfs: Path) -> None:
        # Host keys and machine-id must be unique per host: they are made per copy instead.
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        (rootfs / "etc/machine-id").write_text("")
        # This machine reaches package registries through a TLS-intercepting proxy; trust its
        # CA inside the hosts too (as a local CA, so update-ca-certificates keeps it), and make
        # pip and npm use the system bundle. This is the only deviation from a stock image.
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            for crt in local_cas.glob("*.crt"):
                shutil.copy(crt, rootfs / "usr/local/share/ca-certificates" / crt.name)
            subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True,
                           stdout=subprocess.DEVNULL)
        (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        (rootfs / "etc/npmrc").write_text("cafile=/etc/ssl/certs/ca-certificates.crt\n")
        # no console gettys: the containers are driven over SSH only
        for unit in ("getty@tty1.service", "console-getty.service"):
            link = rootfs / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")

    # ---- hosts -----------------------------------------------------------------------------
    def ensure_ssh_key(self) -> None:
        if not self.ssh_key.exists():
            self.ssh_key.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.ssh_key.parent, 0o700)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sandbox-{self.name}",
                 "-f", str(self.ssh_key)])

    def ensure_rootfs(self, role: str, image: Path) -> None:
        root = self.rootfs(role)
        if (root / "etc/ssh/ssh_host_ed25519_key").exists():
            return
        self.record("rootfs", path=str(root))
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(root)], check=True)
        (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
        (root / "etc/hostname").write_text(f"{role}\n")
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        pub = self.ssh_key.with_suffix(".pub").read_text()
        (ssh_dir / "authorized_keys").write_text(pub)
        for kind in ("ed25519", "rsa", "ecdsa"):
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{role}@{self.name}",
                 "-f", str(root / f"etc/ssh/ssh_host_{kind}_key")])

    def write_ssh_files(self) -> None:
        lines, cfg = [], []
        for h in HOSTS:
            pub = (self.rootfs(h.role) / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{self.host_ip(h.role)} {pub[0]} {pub[1]}")
            cfg.append(
                f"Host {self.name}-{h.role}\n  HostName {self.host_ip(h.role)}\n  User root\n"
                f"  IdentityFile {self.ssh_key}\n  UserKnownHostsFile {self.known_hosts}\n"
                "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n"
                f"  ControlMaster auto\n  ControlPath {self.dir}/ssh/cm-%r@%h:%p\n"
                "  ControlPersist 60\n"
            )
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self.ssh_config.write_text("\n".join(cfg))

    def ensure_network(self, role: str) -> None:
        ns, veth, spec = self.netns(role), self.veth(role), self.spec(role)
        if not Path(f"/run/netns/{ns}").exists():
            self.record("netns", name=ns)
            run(["ip", "netns", "add", ns])
        if run(["ip", "link", "show", veth], check=False).returncode != 0:
            self.record("link", name=veth)
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", spec.ifname,
                 "netns", ns])
            run(["ip", "addr", "add", f"{self.gateway_ip(role)}/24", "dev", veth])
            run(["ip", "link", "set", veth, "up"])
            nsx = ["ip", "netns", "exec", ns]
            run(nsx + ["ip", "addr", "add", f"{self.host_ip(role)}/24", "dev", spec.ifname])
            run(nsx + ["ip", "link", "set", spec.ifname, "up"])
            run(nsx + ["ip", "link", "set", "lo", "up"])
            run(nsx + ["ip", "route", "add", "default", "via", self.gateway_ip(role)])
        rule = ["POSTROUTING", "-s", self.host_net(role), "!", "-o", veth, "-j", "MASQUERADE"]
        if run(["iptables", "-t", "nat", "-C"] + rule, check=False).returncode != 0:
            self.record("nat", rule=rule)
            run(["iptables", "-t", "nat", "-A"] + rule)

    def ensure_forwarding(self) -> None:
        current = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        if current != "1":
            self.record("sysctl", key="net.ipv4.ip_forward", previous=current)
            run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def ensure_svc_address(self) -> None:
        """The stand-ins' address, on the machine's loopback (this kernel has no dummy links).

        The hosts reach it through their default route, which points at the machine."""
        for ip in (self.svc_ip, self.s3_ip):
            if f" {ip}/32 " not in run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout:
                self.record("addr", dev="lo", cidr=f"{ip}/32")
                run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"])

    # ---- processes ---------------------------------------------------------------------------
    @staticmethod
    def _starttime(pid: int) -> str | None:
        """Start time of a live process (None when gone). A zombie counts as gone, and is reaped
        when it is this process's child (a long-running caller such as pytest started it)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if fields[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        return fields[19]

    def process_alive(self, entry: dict) -> bool:
        return self._starttime(entry["pid"]) == entry["starttime"]

    def find_process(self, label: str) -> dict | None:
        for r in self.load()["resources"]:
            if r["kind"] == "process" and r["label"] == label:
                return r
        return None

    def ensure_process(self, label: str, argv: list[str], env: dict | None = None,
                       ready: tuple[str, int] | None = None) -> None:
        old = self.find_process(label)
        if old and self.process_alive(old):
            return
        if old:
            self.forget(old)
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{label}.log", "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=self.dir,
            )
        time.sleep(0.05)
        starttime = self._starttime(proc.pid)
        self.record("process", label=label, pid=proc.pid, starttime=starttime, argv=argv)
        if ready:
            wait_port(*ready, timeout=60, what=label, proc=proc)

    # ---- the LAN host's dump disk -------------------------------------------------------------
    def ensure_backup_disk(self) -> None:
        """Made and formatted once (it holds data: never re-formatted), loop-mounted on the machine.

        The image is formatted under another name and renamed when done, so an image that exists
        is always a formatted one (a crash mid-way leaves only the ``.new`` file, in this
        sandbox's directory)."""
        img, mnt = self.backup_disk_image, self.backup_disk_mount
        if not img.exists():
            self.record("file", path=str(img))
            img.parent.mkdir(parents=True, exist_ok=True)
            new = img.with_name(img.name + ".new")
            with open(new, "wb") as f:
                f.truncate(self.BACKUP_DISK_MB * 1024 * 1024)  # sparse
            run(["mkfs.ext4", "-q", "-F", "-L", "pg_backups", str(new)])
            new.replace(img)
        if not os.path.ismount(mnt):
            self.record("mount", path=str(mnt))
            mnt.mkdir(parents=True, exist_ok=True)
            run(["mount", "-o", "loop", str(img), str(mnt)])

    def backup_disk_uuid(self) -> str:
        """The dump disk's filesystem UUID (what the LAN host's fstab line names)."""
        if not self.backup_disk_image.exists():
            raise WorldError(f"sandbox {self.name} has no dump disk ({self.backup_disk_image}): "
                             "run `make sandbox` (or `make sandbox-up`) first")
        return run(["blkid", "-s", "UUID", "-o", "value", str(self.backup_disk_image)]).stdout.strip()

    def detach_backup_disk(self) -> None:
        """The dump disk goes missing: /mnt/pg_backups in the LAN host is a plain (empty) directory
        again. The disk itself stays mounted on the machine, data intact."""
        t = self.BACKUP_DISK_TARGET
        self.ssh("lan", f"if mountpoint -q {t}; then umount {t}; fi; ! mountpoint -q {t}")

    def attach_backup_disk(self) -> None:
        """The disk is back with its data, hot (as when it is plugged in again): the machine's
        mount is put into the running LAN host's mount namespace at /mnt/pg_backups. A host that is
        not running gets it bound when it boots."""
        self.ensure_backup_disk()
        t = self.BACKUP_DISK_TARGET
        if self.ssh("lan", f"mountpoint -q {t}", check=False).returncode == 0:
            return
        code = ("import sys; from sandbox.world import move_mount_into; "
                "move_mount_into(sys.argv[1], int(sys.argv[2]), sys.argv[3])")
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-c", code, str(self.backup_disk_mount), str(self.container_pid("lan")), t],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": pythonpath})
        if proc.returncode != 0:
            raise WorldError(f"could not attach the dump disk to the LAN host: {proc.stderr.strip()}")
        self.ssh("lan", f"mountpoint -q {t}")

    def container_pid(self, role: str) -> int:
        """The machine-side PID of a running host's init (PID 1 inside it)."""
        p = self.find_process(f"nspawn-{role}")
        if p is None or not self.process_alive(p):
            raise WorldError(f"host {role} of sandbox {self.name} is not running")
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(d))
        todo = list(children.get(p["pid"], []))
        while todo:
            pid = todo.pop(0)
            with contextlib.suppress(OSError):
                nspid = next(line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                             if line.startswith("NSpid:"))
                if len(nspid) > 1 and nspid[-1] == "1":
                    return pid
            todo += children.get(pid, [])
        raise WorldError(f"host {role}: no container init under process {p['pid']} (booting or rebooting?)")

    # ---- booting hosts ------------------------------------------------------------------------
    def machine(self, role: str) -> str:
        return f"{self.name}-{role}"

    def nspawn_argv(self, role: str) -> list[str]:
        return [
            "systemd-nspawn", "-D", str(self.rootfs(role)), "-b",
            f"--machine={self.machine(role)}", "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{self.netns(role)}",
            "--console=passive", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            # the host has a network namespace of its own: it may configure it, as a server can
            "--capability=CAP_NET_ADMIN",
            *([f"--bind={self.backup_disk_mount}:{self.BACKUP_DISK_TARGET}"] if role == "lan" else []),
        ]

    def prepare_host_network(self, role: str) -> None:
        """The host's interface as it is at power-on; done before every start of its container."""
        spec = self.spec(role)
        nsx = ["ip", "netns", "exec", self.netns(role)]
        if (self.rootfs(role) / "etc/network/interfaces.d" / spec.ifname).exists():
            # The host configures its interface itself (ifupdown, as the converge set it up): boot
            # it with a bare interface, like a server's NIC at power-on.
            run(nsx + ["ip", "addr", "flush", "dev", spec.ifname])
            run(nsx + ["ip", "route", "flush", "dev", spec.ifname], check=False)
        else:
            # a bare image has no network configuration: the sandbox gives it its address, as an
            # installer or a provider would (again after a host that managed it shut it down)
            run(nsx + ["ip", "addr", "replace", f"{self.host_ip(role)}/24", "dev", spec.ifname])
            run(nsx + ["ip", "link", "set", spec.ifname, "up"])
            run(nsx + ["ip", "route", "replace", "default", "via", self.gateway_ip(role)])

    def boot(self, role: str) -> None:
        """Start a host's supervisor (``boot-host ROLE --foreground``) if it is not running."""
        if (p := self.find_process(f"nspawn-{role}")) and self.process_alive(p):
            if "boot-host" in p["argv"]:
                return
            # started by an earlier version of this file: it would stay down after a reboot
            log(f"{role}: its container runs without a supervisor; restarting it under one")
            self.stop_host(role)
        if not (self.rootfs(role) / "etc/ssh/ssh_host_ed25519_key").exists():
            raise WorldError(f"sandbox {self.name} has no host {role}: run `make sandbox-up` first")
        if role == "lan":
            self.ensure_backup_disk()
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.ensure_process(
            f"nspawn-{role}",
            [sys.executable, "-m", "sandbox.world", "boot-host", role, "--foreground",
             f"--machine={self.machine(role)}"],
            env={"SANDBOX_NAME": self.name, "SANDBOX_SUBNET": str(self.subnet), "PYTHONPATH": pythonpath},
        )

    def run_host(self, role: str) -> int:
        """The supervisor (this process is the host's recorded process): prepares the network and
        runs systemd-nspawn, again each time the container reboots itself (exit 133); returns
        nspawn's exit code otherwise (0 after a poweroff). SIGTERM, SIGINT or SIGHUP is passed on
        to nspawn as SIGTERM (it shuts the container down cleanly) and ends the loop. If this
        process is killed outright, nspawn gets SIGTERM from the kernel (parent-death signal)."""
        signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        stopping = False
        child: subprocess.Popen | None = None

        def on_signal(signum: int, _frame) -> None:
            nonlocal stopping
            stopping = True
            if child is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

        for sig in signals:
            signal.signal(sig, on_signal)
        boots = 0
        while True:
            self.prepare_host_network(role)
            if role == "lan" and not os.path.ismount(self.backup_disk_mount):
                log(f"{role}: the dump disk is not mounted at {self.backup_disk_mount}; not booting")
                return 1
            # blocked from here until nspawn runs (it inherits the mask and takes them from its
            # own signalfd), so a stop cannot fall between the check and the start
            signal.pthread_sigmask(signal.SIG_BLOCK, signals)
            if stopping:
                return 0
            boots += 1
            log(f"{role}: starting the container (boot {boots})")
            child = subprocess.Popen(self.nspawn_argv(role), stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            rc = child.wait()
            if stopping or rc != 133:
                log(f"{role}: container ended (systemd-nspawn exit {rc})")
                return rc
            log(f"{role}: the container rebooted itself (systemd-nspawn exit 133): booting it again")
            time.sleep(0.5)

    def stop_host(self, role: str) -> None:
        """Shut one host down (its disk is kept; ``up`` boots it again)."""
        if (p := self.find_process(f"nspawn-{role}")) is not None:
            self._stop_process(p)
            self.forget(p)

    def reset_host(self, role: str) -> None:
        """Replace a host with a fresh copy of the golden image (new disk, new host keys), booted.

        The LAN host's dump disk is a disk of its own: kept, with its data (bound again at boot)."""
        self.stop_host(role)
        root = self.rootfs(role)
        if root.exists():
            self._refuse_mounts_under(root)
            shutil.rmtree(root)
        self.ensure_rootfs(role, self.ensure_image())
        self.write_ssh_files()
        for sock in (self.dir / "ssh").glob("cm-*"):
            sock.unlink(missing_ok=True)
        self.boot(role)
        self.wait_booted(role)

    @staticmethod
    def _refuse_mounts_under(path: Path) -> None:
        """Never delete a tree with something mounted in it (rmtree would empty that filesystem)."""
        below = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                 if (line.split()[1] + "/").startswith(f"{path}/")]
        if below:
            raise WorldError(f"not removing {path}: {', '.join(below)} mounted below it")

    def ssh(self, role: str, command: str, check: bool = True, input: str | None = None,
            multiplex: bool = True) -> subprocess.CompletedProcess:
        """Run a command on a host as root (``multiplex=False``: a login of its own)."""
        opts = [] if multiplex else ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), *opts, f"{self.name}-{role}", command],
            check=check, text=True, capture_output=True, input=input,
        )

    def wait_booted(self, role: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        proc = self.find_process(f"nspawn-{role}")
        while not port_open(self.host_ip(role), 22):
            if proc is None or not self.process_alive(proc):
                raise WorldError(f"host {role} is not running (its container ended; see "
                                 f"{self.dir / 'logs' / f'nspawn-{role}.log'})")
            if time.monotonic() > deadline:
                raise WorldError(f"sshd on {role} not reachable at {self.host_ip(role)}:22 after {timeout}s")
            time.sleep(0.2)
        while time.monotonic() < deadline:
            r = self.ssh(role, "systemctl is-system-running --wait", check=False)
            if r.stdout.strip() in ("running", "degraded"):
                if r.stdout.strip() == "degraded":
                    failed = self.ssh(role, "systemctl --failed --no-legend", check=False).stdout
                    log(f"{role}: systemd degraded: {failed.strip()}")
                return
            time.sleep(1)
        raise WorldError(f"{role} did not finish booting within {timeout}s")

    # ---- stand-ins ---------------------------------------------------------------------------
    def ensure_pebble(self) -> None:
        d = self.dir / "pebble"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "listener.pem").exists():
            # pebble's own test certificate names only localhost; issue one for our address
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "3650", "-subj", f"/CN=sandbox {self.name} listener CA",
                 "-keyout", str(d / "listener-ca.key"), "-out", str(d / "listener-ca.pem")])
            run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", f"/CN={self.svc_ip}", "-keyout", str(d / "listener.key"),
                 "-out", str(d / "listener.csr")])
            ext = d / "ext.cnf"
            ext.write_text(f"subjectAltName=IP:{self.svc_ip}\n")
            run(["openssl", "x509", "-req", "-in", str(d / "listener.csr"), "-days", "3650",
                 "-CA", str(d / "listener-ca.pem"), "-CAkey", str(d / "listener-ca.key"),
                 "-CAcreateserial", "-extfile", str(ext), "-out", str(d / "listener.pem")])
        (d / "config.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{self.svc_ip}:14000",
            "managementListenAddress": f"{self.svc_ip}:15000",
            "certificate": str(d / "listener.pem"), "privateKey": str(d / "listener.key"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}, indent=2))
        self.ensure_process(
            "challtestsrv",
            ["pebble-challtestsrv", "-defaultIPv4", self.host_ip("public"), "-defaultIPv6", "",
             "-dns01", f"{self.svc_ip}:8053", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"{self.svc_ip}:8055"],
            ready=(self.svc_ip, 8055),
        )
        self.ensure_process(
            "pebble",
            ["pebble", "-config", str(d / "config.json"), "-dnsserver", f"{self.svc_ip}:8053"],
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
            ready=(self.svc_ip, 14000),
        )

    def ensure_s3(self) -> None:
        self.ensure_process(
            "s3", [str(REPO / ".venv/bin/moto_server"), "-H", self.s3_ip, "-p", "9000"],
            ready=(self.s3_ip, 9000),
        )

    def ensure_webhook(self) -> None:
        self.webhook_log.parent.mkdir(parents=True, exist_ok=True)
        self.ensure_process(
            "webhook",
            [sys.executable, str(REPO / "sandbox/standins/webhook.py"), "--bind", self.svc_ip,
             "--port", "8099", "--log", str(self.webhook_log)],
            ready=(self.svc_ip, 8099),
        )

    def ensure_forge(self) -> None:
        """A git server over SSH on the forge host, holding the fixture repositories.

        Deploy keys are registered per repository (``register-key``) and are read-only; the
        sandbox's own key may push. Repositories are rebuilt from sandbox/fixtures/ with fixed
        commit dates, so their tags have the same commit ids on every machine.
        """
        if self.ssh("forge", "test -x /usr/local/bin/forge-shell", check=False).returncode != 0:
            self.ssh("forge", "DEBIAN_FRONTEND=noninteractive apt-get -qq update && "
                     "DEBIAN_FRONTEND=noninteractive apt-get -qq install -y git >/dev/null")
            # every key of this user has a forced command (forge-shell); its shell runs that
            self.ssh("forge", "id git >/dev/null 2>&1 || useradd --system --home-dir /srv/git "
                     "--create-home --shell /bin/sh git")
            self.ssh("forge", "install -m 0755 /dev/stdin /usr/local/bin/forge-shell",
                     input=(REPO / "sandbox/standins/forge-shell").read_text())
            pub = self.ssh_key.with_suffix(".pub").read_text().strip()
            self.ssh("forge", "install -d -o git -g git -m 0700 /srv/git/.ssh && "
                     "install -o git -g git -m 0600 /dev/stdin /srv/git/.ssh/authorized_keys",
                     input=f'restrict,command="/usr/local/bin/forge-shell --admin" {pub}\n')
        build = self.dir / "fixture-repos"
        subprocess.run(["bash", str(REPO / "sandbox/fixtures/make_repos.sh"), str(build)],
                       check=True, stdout=subprocess.DEVNULL)
        tar = subprocess.run(["tar", "-C", str(build), "-c", "."], check=True,
                             capture_output=True).stdout
        subprocess.run(
            ["ssh", "-F", str(self.ssh_config), f"{self.name}-forge",
             "rm -rf /srv/git/repos.new && mkdir /srv/git/repos.new && "
             "tar -C /srv/git/repos.new -x && for r in /srv/git/repos.new/*.git; do "
             "n=$(basename $r); rm -rf /srv/git/$n; mv $r /srv/git/$n; done && "
             "rmdir /srv/git/repos.new && chown -R git:git /srv/git"],
            input=tar, check=True, capture_output=True,
        )

    def register_key(self, app: str, pubkey: str) -> None:
        """Grant ``pubkey`` read access to the fixture repository ``app`` (a deploy key)."""
        if not re.fullmatch(r"[a-z0-9_]+", app):
            raise WorldError(f"register-key: bad repository name {app!r}")
        fields = pubkey.split()
        if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-")):
            raise WorldError("register-key: give an OpenSSH public key line")
        line = f'restrict,command="/usr/local/bin/forge-shell {app}" {fields[0]} {fields[1]}'
        self.ssh("forge", f"grep -qxF '{line}' /srv/git/.ssh/authorized_keys || "
                 f"echo '{line}' >> /srv/git/.ssh/authorized_keys")

    # ---- up / down / status ------------------------------------------------------------------
    def up(self) -> None:
        started = time.monotonic()
        self.check_subnet()
        self.claim()
        state = self.load()
        state["subnet"] = str(self.subnet)  # what it is created with (check_subnet holds it to that)
        self.save(state)
        self.ensure_ssh_key()
        image = self.ensure_image()
        self.ensure_forwarding()
        self.ensure_svc_address()
        for h in HOSTS:
            self.ensure_rootfs(h.role, image)
            self.ensure_network(h.role)
        self.write_ssh_files()
        self.ensure_backup_disk()
        for h in HOSTS:
            self.boot(h.role)
        self.ensure_pebble()
        self.ensure_s3()
        self.ensure_webhook()
        for h in HOSTS:
            self.wait_booted(h.role)
        self.ensure_forge()
        log(f"sandbox {self.name} up in {time.monotonic() - started:.0f}s")

    def down(self) -> list[str]:
        """Remove everything recorded, newest first. Returns what it removed."""
        removed: list[str] = []
        self.adopt_recorded_subnet()
        state = self.load()
        # ssh's connection masters (ControlPersist) were started by this sandbox's ssh calls
        if self.ssh_config.exists():
            for h in HOSTS:
                if subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", f"{self.name}-{h.role}"],
                                  capture_output=True, check=False).returncode == 0:
                    removed.append(f"ssh connection master for {h.role}")
        # stop processes first (containers before their namespaces go away)
        for r in reversed(list(state["resources"])):
            if r["kind"] == "process":
                self._stop_process(r)
                removed.append(f"process {r['label']} pid {r['pid']}")
                self.forget(r)
        for r in reversed(self.load()["resources"]):
            kind = r["kind"]
            if kind == "nat":
                while run(["iptables", "-t", "nat", "-C"] + r["rule"], check=False).returncode == 0:
                    run(["iptables", "-t", "nat", "-D"] + r["rule"])
                removed.append(f"nat rule {' '.join(r['rule'])}")
            elif kind == "link":
                run(["ip", "link", "del", r["name"]], check=False)
                removed.append(f"link {r['name']}")
            elif kind == "addr":
                run(["ip", "addr", "del", r["cidr"], "dev", r["dev"]], check=False)
                removed.append(f"address {r['cidr']} on {r['dev']}")
            elif kind == "netns":
                run(["ip", "netns", "del", r["name"]], check=False)
                removed.append(f"netns {r['name']}")
            elif kind == "mount":
                if os.path.ismount(r["path"]):
                    run(["umount", r["path"]])
                removed.append(f"mount {r['path']}")
            elif kind == "file":
                Path(r["path"]).unlink(missing_ok=True)
                removed.append(f"file {r['path']}")
            elif kind == "rootfs":
                path = Path(r["path"])
                if path.exists():
                    shutil.rmtree(path)
                removed.append(f"rootfs {path}")
            elif kind == "sysctl" and not self._other_sandboxes_up():
                run(["sysctl", "-qw", f"{r['key']}={r['previous']}"])
                removed.append(f"sysctl {r['key']}={r['previous']}")
            self.forget(r)
        self.release()  # while the directory exists (without it the entry looks stale)
        if self.dir.exists():
            self._refuse_mounts_under(self.dir)
            shutil.rmtree(self.dir)
        return removed

    def _other_sandboxes_up(self) -> bool:
        return any(name != self.name for name in self.registry_entries())

    def _stop_process(self, r: dict) -> None:
        if not self.process_alive(r):
            return
        os.kill(r["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process_alive(r):
            time.sleep(0.2)
        if self.process_alive(r):
            os.kill(r["pid"], signal.SIGKILL)
            while self.process_alive(r):
                time.sleep(0.1)

    def leftovers(self) -> list[str]:
        """What of this sandbox still exists on the machine (empty after a clean ``down``)."""
        found = []
        netns = run(["ip", "netns", "list"]).stdout
        links = run(["ip", "-o", "link", "show"]).stdout
        nat = run(["iptables", "-t", "nat", "-S"]).stdout
        for h in HOSTS:
            if re.search(rf"^{re.escape(self.netns(h.role))}\b", netns, re.M):
                found.append(f"netns {self.netns(h.role)}")
            if re.search(rf": {re.escape(self.veth(h.role))}[@:]", links):
                found.append(f"link {self.veth(h.role)}")
            if f"-s {self.host_net(h.role)} " in nat:
                found.append(f"nat rule for {self.host_net(h.role)}")
        for ip in (self.svc_ip, self.s3_ip):
            if f" {ip}/32 " in run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout:
                found.append(f"address {ip} on lo")
        mounts = Path("/proc/mounts").read_text()
        if str(self.dir) in mounts:
            found.append(f"mounts under {self.dir}")
        loops = run(["losetup", "--list", "--noheadings", "-O", "NAME,BACK-FILE"], check=False).stdout
        for line in loops.splitlines():
            if str(self.dir) in line:
                found.append(f"loop device {line.strip()}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if f"--machine={self.name}-" in cmdline or str(self.dir) in cmdline:
                found.append(f"process {pid}: {cmdline[:80]}")
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        if self.name in self.registry_entries():
            found.append(f"registry entry {self.REGISTRY / self.name}.json")
        return found

    def status(self) -> dict:
        self.adopt_recorded_subnet()
        state = self.load()
        procs = {r["label"]: r for r in state["resources"] if r["kind"] == "process"}

        def proc_up(label: str) -> bool:
            return label in procs and self.process_alive(procs[label])

        hosts = {}
        for h in HOSTS:
            ip = self.host_ip(h.role)
            hosts[h.role] = {
                "address": ip, "interface": h.ifname,
                "up": proc_up(f"nspawn-{h.role}") and port_open(ip, 22),
                "ssh": f"ssh -F {self.ssh_config} {self.name}-{h.role}",
            }
        standins = {
            "acme (pebble)": {"address": self.acme_directory, "up": proc_up("pebble")
                              and port_open(self.svc_ip, 14000)},
            "acme dns (challtestsrv)": {"address": f"{self.svc_ip}:8053",
                                        "up": proc_up("challtestsrv")},
            "s3 (moto)": {"address": self.s3_endpoint, "up": proc_up("s3")
                          and port_open(self.s3_ip, 9000)},
            "webhook (discord stand-in)": {"address": self.webhook_base, "up": proc_up("webhook")
                                           and port_open(self.svc_ip, 8099),
                                           "log": str(self.webhook_log)},
            "git (forge)": {"address": f"ssh://git@{self.host_ip('forge')}/srv/git/",
                            "up": hosts["forge"]["up"]},
        }
        return {"name": self.name, "subnet": str(self.subnet), "exists": bool(state["resources"]),
                "hosts": hosts, "standins": standins}


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a supervised child before exec: SIGTERM when the supervisor dies, however it dies."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# the mount API's syscalls (Linux >= 5.2; the same numbers on every architecture but alpha)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429
_OPEN_TREE_CLONE, _AT_RECURSIVE, _AT_FDCWD = 1, 0x8000, -100
_MOVE_MOUNT_F_EMPTY_PATH, _CLONE_NEWNS = 0x4, 0x20000


def move_mount_into(source: str, pid: int, target: str) -> None:
    """Put a copy of the machine's mount at ``source`` onto ``target`` in the mount namespace of
    process ``pid`` (a container's init): what plugging a disk in does for the host. Call it in
    a process of its own: it leaves the machine's mount namespace for good."""
    def check(ret: int, what: str) -> int:
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return ret

    tree = check(_LIBC.syscall(_SYS_OPEN_TREE, _AT_FDCWD, source.encode(),
                               _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC), f"open_tree {source}")
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    check(_LIBC.setns(ns, _CLONE_NEWNS), f"setns into the mount namespace of {pid}")
    check(_LIBC.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
          f"move_mount onto {target}")


def wait_port(host: str, port: int, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise WorldError(f"{what} exited with {proc.returncode}; see its log in .sandbox/")
        time.sleep(0.2)
    raise WorldError(f"{what} not reachable at {host}:{port} after {timeout}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sandbox.world", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    st = sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    sub.add_parser("leftovers")
    fs = sub.add_parser("free-slot", help="print a free SANDBOX_NAME and SANDBOX_SUBNET")
    fs.add_argument("--prefix", default="sbx")
    sub.add_parser("ssh-config")
    bh = sub.add_parser("boot-host", help="boot one host (supervised: it comes back after a reboot) "
                                          "and wait until it is up")
    bh.add_argument("role", choices=[h.role for h in HOSTS])
    bh.add_argument("--foreground", action="store_true",
                    help="be the host's supervisor: run its container from this process (what `up` starts)")
    bh.add_argument("--machine", help="with --foreground: the container's name, checked against "
                                      "SANDBOX_NAME (it names the process in ps)")
    rk = sub.add_parser("register-key")
    rk.add_argument("app")
    rk.add_argument("pubkey")
    args = p.parse_args(argv)
    try:
        if args.cmd == "free-slot":
            print(*World.free_slot(args.prefix))
            return 0
        world = World()
        if args.cmd == "up":
            world.up()
        elif args.cmd == "down":
            for line in world.down():
                print(f"removed {line}")
            left = world.leftovers()
            if left:
                print("LEFT BEHIND:\n  " + "\n  ".join(left), file=sys.stderr)
                return 1
            print(f"sandbox {world.name}: nothing left behind (checked netns, links, NAT, "
                  "mounts, loop devices, processes)")
        elif args.cmd == "leftovers":
            left = world.leftovers()
            print("\n".join(left) if left else "none")
            return 1 if left else 0
        elif args.cmd == "status":
            st = world.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print_status(st)
            return 0 if all(h["up"] for h in st["hosts"].values()) else 3
        elif args.cmd == "ssh-config":
            print(world.ssh_config)
        elif args.cmd == "boot-host":
            if args.machine not in (None, world.machine(args.role)):
                raise WorldError(f"boot-host: --machine={args.machine} is not {world.machine(args.role)} "
                                 f"(SANDBOX_NAME={world.name})")
            if args.foreground:
                return world.run_host(args.role)
            world.boot(args.role)
            world.wait_booted(args.role)
        elif args.cmd == "register-key":
            world.register_key(args.app, args.pubkey)
    except (WorldError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"sandbox: error: {exc}\n{detail}".rstrip(), file=sys.stderr)
        return 1
    return 0


def print_status(st: dict) -> None:
    print(f"sandbox {st['name']} ({st['subnet']})")
    for role, h in st["hosts"].items():
        print(f"  host {role:<8} {h['address']:<15} {'up' if h['up'] else 'DOWN':<5} {h['ssh']}")
    for label, s in st["standins"].items():
        print(f"  {label:<27} {'up' if s['up'] else 'DOWN':<5} {s['address']}")


if __name__ == "__main__":
    sys.exit(main())
