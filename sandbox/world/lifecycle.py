"""A whole sandbox: ``up``, ``down`` (everything recorded, newest first), what is left behind, and
its status."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .addresses import HOSTS
from .common import log, port_open, run


class Lifecycle:
    """Bringing a sandbox up, taking it down, proving nothing is left, and reporting on it."""

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
