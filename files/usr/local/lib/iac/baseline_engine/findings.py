"""One difference between the host and its baseline (Debian's packages + the declaration)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# what a repair does (the converge, never a drift check): quarantine moves the thing to
# /var/lib/iac/quarantine/<utc>/<its path> with a manifest; reinstall puts a package's file back;
# remove-keys keeps only the declared key lines; renew asks for a new certificate; restore puts
# a held file back; report is for the operator (a second root, an undeclared listener)
REPAIRS = ("quarantine", "reinstall", "remove-keys", "renew", "restore", "report")


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
