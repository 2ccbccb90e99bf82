"""A whole sandbox: ``up``, ``down`` (everything recorded, newest first), what is left behind, and
its status."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from . import cgroups
from .addresses import HOSTS, MAX_PUBLIC_HOSTS
from .common import WorldError, log, port_open, run


class Lifecycle:
    """Bringing a sandbox up, taking it down, proving nothing is left, and reporting on it."""

    def up(self) -> None:
        started = time.monotonic()
        self.check_subnet()
        self.claim()
        state = self.load()
        state["subnet"] = str(self.subnet)  # what it is created with (check_subnet holds it to that)
        self.save(state)
        self.check_releases([h.role for h in HOSTS if self.rootfs(h.role).exists()])
        self.ensure_ssh_key()
        self.ensure_forwarding()
        self.ensure_svc_address()
        for h in HOSTS:
            self.ensure_rootfs(h.role)
            self.ensure_network(h.role)
        self.write_ssh_files()
        self.ensure_backup_disk()
        for h in HOSTS:
            self.boot(h.role)
        self.ensure_pebble()
        self.ensure_replica_dns()
        self.ensure_s3()
        self.ensure_webhook()
        for h in HOSTS:
            self.wait_booted(h.role)
        self.ensure_forge()
        log(f"sandbox {self.name} up in {time.monotonic() - started:.0f}s")

    def ensure_public_hosts(self, total: int, debian: int | None = None) -> list[str]:
        """The public host and ``total - 1`` replicas of it (``make bench HOSTS=N``): bare Debian
        hosts like the others, each with its own address and a DNS name the ACME server resolves to
        it, on the public host's release (or ``debian``'s: the new machine of `make upgrade`).
        Replicas beyond ``total`` are stopped (their disks stay until ``down``). Returns the
        replicas' roles, booted."""
        if not 1 <= total <= MAX_PUBLIC_HOSTS:
            raise WorldError(f"HOSTS={total}: give 1 to {MAX_PUBLIC_HOSTS} public hosts")
        if not (self.rootfs("public") / "etc/ssh/ssh_host_ed25519_key").exists():
            raise WorldError(f"sandbox {self.name} is not up: run `make sandbox` first")
        state = self.load()
        before = int(state.get("public_hosts", 1))
        state["public_hosts"] = max(total, before)  # every replica ever made stays known to `down`
        self.save(state)
        roles = [self.replica_role(n) for n in range(2, total + 1)]
        for role in roles:
            if debian and self.rootfs(role).exists() and self.debian(role) != debian:
                # a replica of another release: a new machine of the one asked for replaces it
                self.stop_host(role)
                self._refuse_mounts_under(self.rootfs(role))
                shutil.rmtree(self.rootfs(role))
            self.ensure_rootfs(role, debian)
            self.ensure_network(role)
        self.write_ssh_files()
        for role in roles:
            self.boot(role)
        for n in range(total + 1, before + 1):
            self.stop_host(self.replica_role(n))
        for role in roles:
            self.wait_booted(role)
        self.ensure_replica_dns()
        return roles

    def ensure_replica_dns(self) -> None:
        """challtestsrv answers each replica's domain with its address (pebble validates HTTP-01
        there); its records live in memory, so this runs after every start of it. ``add-a``
        appends: the name's records are cleared first, or every call would add one more copy (a
        few dozen and the answer no longer fits pebble's DNS buffer)."""
        for n in range(2, len(self.replica_roles()) + 2):
            host = self.replica_domain(n) + "."
            for endpoint, body in (("clear-a", {"host": host}),
                                   ("add-a", {"host": host, "addresses": [self.host_ip(self.replica_role(n))]})):
                urllib.request.urlopen(urllib.request.Request(
                    f"http://{self.svc_ip}:8055/{endpoint}", data=json.dumps(body).encode(), method="POST"),
                    timeout=5).read()

    def down(self) -> list[str]:
        """Remove everything recorded, newest first. Returns what it removed."""
        removed: list[str] = []
        self.adopt_recorded_subnet()
        state = self.load()
        # ssh's connection masters (ControlPersist) were started by this sandbox's ssh calls
        if self.ssh_config.exists():
            for role in self.host_roles():
                if subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", f"{self.name}-{role}"],
                                  capture_output=True, check=False).returncode == 0:
                    removed.append(f"ssh connection master for {role}")
        # stop processes first (containers before their namespaces go away)
        for r in reversed(list(state["resources"])):
            if r["kind"] == "process":
                self._stop_process(r)
                removed.append(f"process {r['label']} pid {r['pid']}")
                self.forget(r)
        # the hosts' control groups (sandbox/world/cgroups.py), once their supervisors are gone
        for cgroup in cgroups.find(self.name):
            if cgroups.remove(cgroup):
                removed.append(f"cgroup {cgroup}")
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

    def leftovers(self) -> list[str]:
        """What of this sandbox still exists on the machine (empty after a clean ``down``)."""
        found = []
        netns = run(["ip", "netns", "list"]).stdout
        links = run(["ip", "-o", "link", "show"]).stdout
        nat = run(["iptables", "-t", "nat", "-S"]).stdout
        # every role this sandbox could have made (its ledger is gone after `down`)
        roles = [h.role for h in HOSTS] + [self.replica_role(n) for n in range(2, MAX_PUBLIC_HOSTS + 1)]
        for role in roles:
            if re.search(rf"^{re.escape(self.netns(role))}\b", netns, re.M):
                found.append(f"netns {self.netns(role)}")
            if re.search(rf": {re.escape(self.veth(role))}[@:]", links):
                found.append(f"link {self.veth(role)}")
            if f"-s {self.host_net(role)} " in nat:
                found.append(f"nat rule for {self.host_net(role)}")
        for ip in (self.svc_ip, self.s3_ip):
            if f" {ip}/32 " in run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout:
                found.append(f"address {ip} on lo")
        found += [f"cgroup {c}" for c in cgroups.find(self.name)]
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
        base = [h.role for h in HOSTS]
        # a replica (make bench HOSTS=N) is listed while it runs
        for role in base + [r for r in self.replica_roles() if proc_up(f"nspawn-{r}")]:
            ip = self.host_ip(role)
            hosts[role] = {
                "address": ip, "interface": self.spec(role).ifname, "debian": self.debian(role),
                "up": proc_up(f"nspawn-{role}") and port_open(ip, 22),
                "ssh": f"ssh -F {self.ssh_config} {self.name}-{role}",
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
