"""A day in the hosts' own life is never drift (issue 21): each event below, then drift 0.

* every timer the hosts have fires (apt-daily, apt-daily-upgrade, logrotate, certbot's renewal,
  the backups and their offsite copies, dpkg-db-backup, e2scrub, fstrim, man-db where installed);
* unattended-upgrades installs a real security update from a local test repository (a package
  with a conffile and a timer its maintainer script enables, as Debian's packages do);
* the public host reboots itself (`systemctl reboot`).

Releases, rollbacks, restores and the LAN host's power cut are the same kind of event:
test_release_command.py, test_rollback.py, test_backups.py and test_lan_host.py end each of theirs
with a drift check that includes the baseline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import (
    REPO,
    SANDBOX_INVENTORY,
    TIMINGS,
    Run,
    Sandbox,
    failure_excerpt,
    repo_copy,
)

PACKAGE = "iac-test-security"
REPO_DIR = "/srv/iac-test-security-repo"
SOURCE = "/etc/apt/sources.list.d/iac-test-security.list"


def _drift_in_sync(sandbox: Sandbox, label: str, *extra: str, cwd: Path = REPO) -> None:
    run = sandbox.command(label, [str(REPO / ".venv/bin/python"), "-m", "cli.drift", SANDBOX_INVENTORY, *extra],
                          cwd=cwd)
    assert run.returncode == 0, run.output[-4000:]


def test_the_hosts_own_timers_are_no_drift(sandbox: Sandbox, converged: Run) -> None:
    for role in ("public", "lan"):
        # ACTIVATES, the last column: the service each timer starts
        services = sorted(set(sandbox.ssh(role, "systemctl list-timers --all --no-legend --plain "
                                                "| awk '{print $NF}'").stdout.split()))
        assert {"apt-daily.service", "apt-daily-upgrade.service", "logrotate.service"} <= set(services)
        for service in services:
            # each as its timer starts it; a job that fails (fstrim in a container) is the job's business
            sandbox.ssh(role, f"timeout 600 systemctl start {service}", check=False)
    _drift_in_sync(sandbox, "false-alarm-timers")


def _deb(version: str, conf: str) -> bytes:
    """A package as Debian builds one: a file, a conffile, a timer its postinst enables, and a line its
    postinst adds to /etc/nsswitch.conf (a file the baseline holds; its postrm takes it out on purge)."""
    files = {
        f"usr/share/{PACKAGE}/version": f"{version}\n",
        f"etc/{PACKAGE}.conf": conf,
        f"lib/systemd/system/{PACKAGE}.timer": "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
        f"lib/systemd/system/{PACKAGE}.service": "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    }
    md5sums = "".join(f"{hashlib.md5(t.encode()).hexdigest()}  {p}\n" for p, t in files.items()  # noqa: S324
                      if not p.startswith("etc/"))
    control = {
        "control": (f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: iac <iac@example.org>\n"
                    f"Description: a package for the false-alarm day test\n"),
        "conffiles": f"/etc/{PACKAGE}.conf\n",
        "md5sums": md5sums,
        # as libnss-systemd and pam-auth-update do: a maintainer script edits a file the baseline holds
        "postinst": ("#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n"
                     f"  deb-systemd-helper enable {PACKAGE}.timer >/dev/null || true\n"
                     f"  systemctl daemon-reload || true\n"
                     f"  grep -q '^# {PACKAGE}$' /etc/nsswitch.conf || echo '# {PACKAGE}' >> /etc/nsswitch.conf\n"
                     "fi\n"),
        "postrm": ("#!/bin/sh\nset -e\nif [ \"$1\" = purge ]; then\n"
                   f"  sed -i '/^# {PACKAGE}$/d' /etc/nsswitch.conf\n"
                   f"  deb-systemd-helper purge {PACKAGE}.timer >/dev/null || true\nfi\n"),
    }
    return _ar({"debian-binary": b"2.0\n", "control.tar.gz": _tar(control, mode_of=lambda n: 0o755
                if n in ("postinst", "postrm") else 0o644), "data.tar.gz": _tar(files)})


def _tar(files: dict[str, str], mode_of=lambda name: 0o644) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        # each directory before what it holds, as dpkg-deb builds a package
        dirs = sorted({"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)})
        for name in ["", *dirs]:
            info = tarfile.TarInfo(f"./{name}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), mode_of(name), 1700000000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name:<16}{1700000000:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def _publish(sandbox: Sandbox, debs: dict[str, bytes]) -> None:
    """The repository on the public host: Packages and a Release that says Debian-Security (of the
    host's own release, as unattended-upgrades' default origins ask)."""
    codename = sandbox.ssh("public", ". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
    stanzas = []
    for filename, data in debs.items():
        version = filename.split("_")[1]
        stanzas.append(f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: iac <iac@example.org>\n"
                       f"Filename: {filename}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
                       f"Description: a package for the false-alarm day test\n")
    packages = "\n".join(stanzas).encode()
    release = (f"Origin: Debian\nLabel: Debian-Security\nSuite: {codename}-security\nCodename: {codename}-security\n"
               "Architectures: amd64 all\nComponents: main\nDate: Thu, 03 Dec 2026 00:00:00 UTC\nSHA256:\n"
               f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
               f" {hashlib.sha256(gzip.compress(packages)).hexdigest()} {len(gzip.compress(packages))} "
               "Packages.gz\n")
    files = {"Packages": packages, "Packages.gz": gzip.compress(packages), "Release": release.encode(), **debs}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["ssh", "-F", str(sandbox.world.ssh_config), f"{sandbox.world.name}-public",
                    f"rm -rf {REPO_DIR} && mkdir -p {REPO_DIR} && tar -C {REPO_DIR} -xf -"],
                   input=out.getvalue(), check=True, capture_output=True)


@pytest.fixture
def allowing_the_test_repository(tmp_path: Path) -> Path:
    """A copy of the repository whose public host declares the test's apt source (baseline.allow)."""
    copy = repo_copy(tmp_path)
    public = copy / "group_data/public.py"
    public.write_text(public.read_text() + f'\nbaseline = {{"allow": [{{"path": "{SOURCE}", "reason": '
                      '"the false-alarm day test: a local security repository"}]}\n')
    return copy


def test_a_security_update_by_unattended_upgrades_is_no_drift(sandbox: Sandbox, converged: Run,
                                                              allowing_the_test_repository: Path) -> None:
    copy = allowing_the_test_repository
    v1, v2 = _deb("1.0", "setting = 1\n"), _deb("1.0+deb12u1", "setting = 2\n")
    try:
        _publish(sandbox, {f"{PACKAGE}_1.0_all.deb": v1})
        sandbox.ssh("public", f"echo 'deb [trusted=yes] file:{REPO_DIR} ./' > {SOURCE} && apt-get update -qq "
                              f"&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PACKAGE}")
        # its postinst edited a file the baseline holds, inside the dpkg run: the host's own life
        assert sandbox.ssh("public", f"grep -c '^# {PACKAGE}$' /etc/nsswitch.conf").stdout.strip() == "1"
        run = sandbox.converge("false-alarm-update-before", "--limit", "public", cwd=copy)
        assert run.returncode == 0, failure_excerpt(run)
        _drift_in_sync(sandbox, "false-alarm-update-v1", "--limit", "public", cwd=copy)
        _publish(sandbox, {f"{PACKAGE}_1.0_all.deb": v1, f"{PACKAGE}_1.0+deb12u1_all.deb": v2})
        sandbox.ssh("public", "apt-get update -qq && unattended-upgrade")
        installed = sandbox.ssh("public", f"dpkg-query -W -f '${{Version}}' {PACKAGE}").stdout
        assert installed == "1.0+deb12u1", "unattended-upgrades did not install the security update"
        assert sandbox.ssh("public", f"cat /etc/{PACKAGE}.conf").stdout == "setting = 2\n"
        _drift_in_sync(sandbox, "false-alarm-update-v2", "--limit", "public", cwd=copy)
        TIMINGS["false-alarm day: security update"] = run.seconds
    finally:
        sandbox.ssh("public", f"DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq {PACKAGE}; rm -f {SOURCE}; "
                              f"rm -rf {REPO_DIR}; apt-get update -qq", check=False)


def test_a_reboot_is_no_drift(sandbox: Sandbox, converged: Run) -> None:
    back = sandbox.world.reboot("public", timeout=120)
    assert back == "running", f"public host not back within 120 s (last state {back!r})"
    _drift_in_sync(sandbox, "false-alarm-reboot", "--limit", "public")
