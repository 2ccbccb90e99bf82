"""The golden image: Debian 12 made once with debootstrap, cached under a hash of its recipe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .common import log

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
        # the LAN host's installer made its admin a sudoer (sandbox/world/hosts.py _install_admin)
        "sudo",
    ],
    # bumped when the post-processing below changes
    "post": 3,
}


class GoldenImage:
    """The cached golden image, built when its recipe has none yet."""

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
