"""The golden images: one per Debian release a host of the sandbox runs (iac/debian.py), each made
once with debootstrap and cached under a hash of its recipe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from iac.debian import release

from .common import WorldError, log

IMAGE_CACHE = Path(os.environ.get("SANDBOX_IMAGE_CACHE", "/var/cache/iac-sandbox/images"))

# The golden image recipe, completed by the release's suite (image_recipe). Its hash names the
# cached image, so changing any of this builds a new image and never reuses a stale one. This is
# what a fresh Debian server has: sshd, python3, systemd. Everything else is the converge's job.
IMAGE_RECIPE = {
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
    "include": [
        "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
        "ca-certificates", "netbase", "procps",
        # the LAN host's installer made its admin a sudoer (sandbox/world/hosts.py _install_admin)
        "sudo",
    ],
    # bumped when the post-processing below changes
    "post": 3,
}


def image_recipe(debian: int) -> dict:
    """The recipe of Debian ``debian``'s golden image."""
    return {"suite": release(debian).codename, **IMAGE_RECIPE}


class GoldenImage:
    """The cached golden images, each built when its recipe has none yet."""

    def image_dir(self, debian: int) -> Path:
        key = hashlib.sha256(json.dumps(image_recipe(debian), sort_keys=True).encode()).hexdigest()[:16]
        return IMAGE_CACHE / key

    def ensure_image(self, debian: int) -> Path:
        img = self.image_dir(debian)
        rootfs = img / "rootfs"
        if (img / "complete").exists():
            log(f"golden image of Debian {debian} cached: {img}")
            return rootfs
        log(f"building golden image of Debian {debian} {img} (debootstrap, about 2 minutes)")
        if img.exists():
            shutil.rmtree(img)
        img.mkdir(parents=True)
        started = time.monotonic()
        r = image_recipe(debian)
        subprocess.run(
            ["debootstrap", f"--variant={r['variant']}", f"--include={','.join(r['include'])}",
             r["suite"], str(rootfs), r["mirror"]],
            check=True, stdout=subprocess.DEVNULL,
        )
        self._post_process_image(rootfs)
        (img / "recipe.json").write_text(json.dumps(r, indent=2))
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


# the hosts that stand in for the declared ones run the release SANDBOX_DEBIAN names; the forge
# (the sandbox's git host, not a declared host) and a sandbox made before releases were recorded
# run this one
DEFAULT_DEBIAN = 12
DECLARED_ROLES = ("public", "lan")


def wanted_releases(value: str | None) -> dict[str, int]:
    """``SANDBOX_DEBIAN``: ``13`` (every declared host), or per host ``public=13,lan=12``. Empty: none
    asked for (hosts keep what they were made from, new ones get DEFAULT_DEBIAN)."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        role, _, version = item.rpartition("=")
        roles = [role] if role else list(DECLARED_ROLES)
        if any(r not in DECLARED_ROLES for r in roles) or not version.isdigit():
            raise WorldError(f"SANDBOX_DEBIAN={value!r}: give a release (13) or host=release pairs "
                             f"({','.join(f'{r}=13' for r in DECLARED_ROLES)}); hosts: {', '.join(DECLARED_ROLES)}")
        try:
            release(int(version))
        except ValueError as exc:
            raise WorldError(f"SANDBOX_DEBIAN={value!r}: {exc}") from None
        out.update({r: int(version) for r in roles})
    return out


class Releases:
    """Which Debian release each host runs: recorded in the ledger when its disk is made."""

    def debian(self, role: str) -> int:
        """The release host ``role`` runs (a replica of the public host made without one of its own
        runs the public host's)."""
        recorded = self.load().get("debian", {})
        return int(recorded.get(role, recorded.get(self.release_role(role), DEFAULT_DEBIAN)))

    @staticmethod
    def release_role(role: str) -> str:
        return "public" if role.startswith("public") else role

    def release_for_new_disk(self, role: str) -> int:
        """The release a new disk of ``role`` is made from: SANDBOX_DEBIAN's, else the recorded one."""
        wanted = wanted_releases(os.environ.get("SANDBOX_DEBIAN")).get(self.release_role(role))
        return wanted or self.debian(role)

    def record_release(self, role: str, debian: int) -> None:
        state = self.load()
        state.setdefault("debian", {})[role] = debian
        self.save(state)

    def check_releases(self, existing: list[str]) -> None:
        """Refuse ``up`` with a SANDBOX_DEBIAN that differs from what an existing host runs (its disk
        would be kept, and the stack would declare another release than the host has)."""
        wanted = wanted_releases(os.environ.get("SANDBOX_DEBIAN"))
        for role in existing:
            have = self.debian(role)
            if wanted.get(role, have) != have:
                raise WorldError(f"SANDBOX_DEBIAN asks for Debian {wanted[role]} on {role}, which runs Debian "
                                 f"{have} in sandbox {self.name}: take the sandbox down first (make sandbox-down), "
                                 "or use another SANDBOX_NAME")
