"""The hosts: their root filesystems (copies of the golden image), network, the per-host supervisor
that runs systemd-nspawn (and boots the container again after it reboots itself), stop and reset,
SSH, and waiting until a host has booted."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import cgroups
from .common import _LIBC, HOSTILE, REPO, WorldError, log, port_open, run


class Hosts:
    """Making, booting, supervising, stopping, resetting and reaching the hosts."""

    def ensure_ssh_key(self) -> None:
        if not self.ssh_key.exists():
            self.ssh_key.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.ssh_key.parent, 0o700)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sandbox-{self.name}",
                 "-f", str(self.ssh_key)])

    def ensure_rootfs(self, role: str, debian: int | None = None) -> None:
        """A disk for host ``role``: a copy of the golden image of its release (``debian``, else the
        one SANDBOX_DEBIAN names or the host ran), with its own machine id and host keys."""
        root = self.rootfs(role)
        if (root / "etc/ssh/ssh_host_ed25519_key").exists():
            return
        debian = debian or self.release_for_new_disk(role)
        image = self.ensure_image(debian)
        self.record("rootfs", path=str(root))
        self.record_release(role, debian)
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
        if role == "lan":
            self._install_admin(root, pub)
        for kind in ("ed25519", "rsa", "ecdsa"):
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{role}@{self.name}",
                 "-f", str(root / f"etc/ssh/ssh_host_{kind}_key")])

    def lan_admin(self) -> tuple[str | None, str, str]:
        """The LAN host's admin as production has it: (login, sudo password, its crypt(3) hash); the
        login is None when group_data/lan.py declares none (the inventory's validation says so).
        The login is group_data/lan.py's; the password a hostile canary kept in the sandbox's
        secrets file, where the inventory reads it (lan.connection.sudo_password), as production's
        operator may keep theirs."""
        from iac.sudo import SECRET_PATH
        from stack.load import GROUP_DATA, read_group_file
        from stack.secrets import crypt_sha512, value_at

        # read raw, before the model: a group file without it gets the model's own error later
        admin = read_group_file(GROUP_DATA / "lan.py").get("admin")
        login = admin.get("name") if isinstance(admin, dict) else None
        secrets = self.secrets()
        password = secrets.own_secret("lan", SECRET_PATH, lambda token: f"{token}{HOSTILE}")
        # the stack's hash while it is this password's (`make rotate-sudo-password` salts its own),
        # else one derived from it
        stored = value_at(secrets.data.get("lan", {}), ("admin", "password_hash"))
        salt = stored.split("$")[2] if isinstance(stored, str) and stored.count("$") == 3 else None
        if salt and crypt_sha512(password, salt) == stored:
            return login, password, stored
        return login, password, crypt_sha512(password, hashlib.sha256(password.encode()).hexdigest()[:16])

    def _install_admin(self, root: Path, pub: str) -> None:
        """The admin account a Debian installer makes on the LAN host (the runbook's `gts`, in group
        sudo, a password, no NOPASSWD rule) with the sandbox's key, as its operator would have put
        it: the bare host is reached as production's is, as that admin with sudo. The hash goes on
        chpasswd's stdin, never on a command line."""
        login, _, hashed = self.lan_admin()
        if not login:
            raise WorldError("group_data/lan.py declares no admin.name: the LAN host is reached as its admin")
        run(["useradd", "--root", str(root), "--create-home", "--shell", "/bin/bash", "--groups", "sudo", login])
        run(["chpasswd", "--root", str(root), "--encrypted"], input=f"{login}:{hashed}\n")
        uid, gid = (int(v) for v in run(["chroot", str(root), "id", "-u", login]).stdout.split()
                    + run(["chroot", str(root), "id", "-g", login]).stdout.split())
        ssh_dir = root / "home" / login / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(pub)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, uid, gid)

    def write_ssh_files(self) -> None:
        lines, cfg = [], []
        for role in self.host_roles():
            if not (key := self.rootfs(role) / "etc/ssh/ssh_host_ed25519_key.pub").exists():
                continue  # a replica whose disk became another host's (switch_host)
            pub = key.read_text().split()
            lines.append(f"{self.host_ip(role)} {pub[0]} {pub[1]}")
            cfg.append(
                f"Host {self.name}-{role}\n  HostName {self.host_ip(role)}\n  User root\n"
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
        # the container's cgroups below one of its own (sandbox/world/cgroups.py): never shared
        # with another host's
        if not cgroups.enter_own(cgroups.label(self.name, role)):
            log(f"{role}: could not make a control group of its own; its units may meet another host's")
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
        # what its container left of its control groups: a next boot starts from none
        for cgroup in cgroups.find(self.name):
            if cgroup.name == cgroups.label(self.name, role):
                cgroups.remove(cgroup)

    def reset_host(self, role: str, debian: int | None = None) -> None:
        """Replace a host with a fresh copy of the golden image (new disk, new host keys), booted;
        on Debian ``debian`` when given (the upgrade drill), else on the release it ran.

        The LAN host's dump disk is a disk of its own: kept, with its data (bound again at boot)."""
        self.stop_host(role)
        root = self.rootfs(role)
        if root.exists():
            self._refuse_mounts_under(root)
            shutil.rmtree(root)
        self.ensure_rootfs(role, debian or self.debian(role))
        self.write_ssh_files()
        for sock in (self.dir / "ssh").glob("cm-*"):
            sock.unlink(missing_ok=True)
        self.boot(role)
        self.wait_booted(role)

    def switch_host(self, role: str, new: str) -> None:
        """The switch at the end of `make upgrade`: the machine ``new`` (a replica the host was
        rebuilt on) takes ``role``'s place and address, as production moves the name or the LAN
        address to the new server; the old machine is retired (its disk removed), the new one
        booted where the old one was."""
        if not (self.rootfs(new) / "etc/ssh/ssh_host_ed25519_key").exists():
            raise WorldError(f"switch: {new} has no disk in sandbox {self.name}")
        debian = self.debian(new)
        for r in (role, new):
            self.stop_host(r)
        old, moved = self.rootfs(role), self.rootfs(new)
        for path in (old, moved):
            self._refuse_mounts_under(path)
        shutil.rmtree(old)
        moved.rename(old)
        self.record_release(role, debian)
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

    def reboot(self, role: str, timeout: float = 90) -> str:
        """``systemctl reboot`` on a host, as an operator would, then wait for it to be back: its
        supervisor boots the container again. Returns systemd's state once back ("running",
        "degraded"), or the last state seen when ``timeout`` ran out ("" when never reached)."""
        marker = "/run/sandbox-before-reboot"  # /run is emptied by a reboot: gone means a new boot
        self.ssh(role, f"touch {marker}")
        started = time.monotonic()
        self.ssh(role, "systemctl reboot", check=False, multiplex=False)
        back = ""
        while time.monotonic() - started < timeout and back not in ("running", "degraded"):
            time.sleep(0.5)
            if port_open(self.host_ip(role), 22):
                back = self.ssh(role, f"test ! -e {marker} && systemctl is-system-running --wait", check=False,
                                multiplex=False).stdout.strip()
        return back

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


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a supervised child before exec: SIGTERM when the supervisor dies, however it dies."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
