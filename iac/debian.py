"""The Debian releases a host may be declared on (``host.debian``) and everything that differs
between them, in this one table: the PostgreSQL major and its paths, Python, the archive's
codename (third-party repositories), and the versions of the services an operator meets in an
upgrade. Operations, the sandbox's golden images, the preflight and the upgrade drill read it
from here; nothing else names a release.

The versions of nginx, restic and certbot are Debian's (what ``apt-get install`` gives on that
release); the repository does not pin them, it records them so that an upgrade says what changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# what ``host.debian`` accepts
DebianVersion = Literal[12, 13]


@dataclass(frozen=True)
class DebianRelease:
    """One Debian release, as this repository depends on it."""

    version: int
    codename: str
    # the cluster Debian's ``postgresql`` package creates (``<major>/main``)
    postgres: int
    python: str
    nginx: str
    restic: str
    certbot: str
    # when Debian's regular security support ends (then LTS), for the README and `make upgrade`
    security_until: str
    # the C library: the newest manylinux wheels its Python can run (an upgrade's requirements check)
    glibc: str
    # nginx 1.25.1 and later turn HTTP/2 on with ``http2 on;`` (``listen ... http2`` is deprecated there)
    nginx_http2_directive: bool

    @property
    def postgres_conf_dir(self) -> str:
        """The cluster's configuration (pg_hba.conf, pg_ident.conf, conf.d/)."""
        return f"/etc/postgresql/{self.postgres}/main"

    @property
    def postgres_data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.postgres}/main"

    @property
    def postgres_cluster_unit(self) -> str:
        """The systemd unit of the cluster (``postgresql.service`` only starts it)."""
        return f"postgresql@{self.postgres}-main"

    @property
    def python_bin(self) -> str:
        """The interpreter every app's virtualenv is made with (Debian's python3)."""
        return f"/usr/bin/python{self.python}"

    def summary(self) -> str:
        return (f"Debian {self.version} ({self.codename}): PostgreSQL {self.postgres}, Python {self.python}, "
                f"nginx {self.nginx}, restic {self.restic}, certbot {self.certbot}")


RELEASES: dict[int, DebianRelease] = {
    12: DebianRelease(version=12, codename="bookworm", postgres=15, python="3.11", nginx="1.22", restic="0.14",
                      certbot="2.1", security_until="2026-06-10", glibc="2.36",
                      nginx_http2_directive=False),
    13: DebianRelease(version=13, codename="trixie", postgres=17, python="3.13", nginx="1.26", restic="0.18",
                      certbot="4.0", security_until="2028-08-09", glibc="2.41",
                      nginx_http2_directive=True),
}


def release(version: int) -> DebianRelease:
    """The release ``version`` (12 or 13); a version this repository does not know is refused."""
    try:
        return RELEASES[version]
    except KeyError:
        known = ", ".join(str(v) for v in RELEASES)
        raise ValueError(f"Debian {version} is not a release this repository knows (known: {known})") from None


def next_release(version: int) -> DebianRelease:
    """The release a host on ``version`` is upgraded to (`make upgrade`, `make upgrade-drill`)."""
    later = sorted(v for v in RELEASES if v > version)
    if not later:
        raise ValueError(f"Debian {version} is the newest release this repository knows: nothing to upgrade to")
    return RELEASES[later[0]]
