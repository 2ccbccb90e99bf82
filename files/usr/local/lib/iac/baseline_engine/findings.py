"""One difference between the host and its baseline (Debian's packages + the declaration)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# what a repair does (the converge, never a drift check), each keeping what it takes away in the
# quarantine (/var/lib/iac/quarantine/<utc>/<its path>, with MANIFEST.json):
#   quarantine      the file, unit, drop-in or link is moved there
#   reinstall       a package's file is put back by reinstalling the package (``argument``)
#   restore         a held installer-made file is put back as the first converge found it
#   remove-keys     only the declared key lines stay (commit-confirm: a second login proves access)
#   renew           the certificate is issued again (the converge's certbot step)
#   restart         the unit is restarted after a daemon-reload (its drop-ins are gone)
#   stop-unit       the unit holding an undeclared listener is stopped (``argument``)
#   leave-group     the account leaves the privileged group (``argument``: the group)
#   lock-account    an undeclared login account gets no shell and a locked password
#   remove-account  a second UID 0 account is deleted (its passwd and shadow lines kept)
#   reset-settings  ALTER SYSTEM's settings are reset (postgresql.auto.conf kept)
#   report          nothing a converge may safely do: the run fails, naming it
REPAIRS = ("quarantine", "reinstall", "restore", "remove-keys", "renew", "restart", "stop-unit", "leave-group",
           "lock-account", "remove-account", "reset-settings", "report")


@dataclass(frozen=True)
class Finding:
    """``category``: where it was found (packages, systemd, units, nginx, sshd, sudoers,
    accounts, keys, cron, apt, libraries, login, resolver, held, postgres, setuid, sockets,
    tls); ``path``: the file, unit, account, port or name it is about; ``mark``: + present
    but not declared, ~ differs, - declared but missing; ``what``: one line, never a secret;
    ``repair``: one of REPAIRS, ``argument`` what it needs (the package to reinstall, the key
    lines to keep); ``diff``: a short unified diff of a text file when one can be told (at
    most 40 lines)."""

    category: str
    path: str
    mark: str
    what: str
    repair: str = "report"
    argument: str = ""
    diff: str = ""

    def __post_init__(self) -> None:
        if self.mark not in ("+", "~", "-"):
            raise ValueError(f"mark {self.mark!r}")
        if self.repair not in REPAIRS:
            raise ValueError(f"repair {self.repair!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """How the drift report shows it: ``~ packages /etc/ssh/ssh_config: differs from openssh-client``."""
        return f"{self.mark} {self.category} {self.path}: {self.what}"
