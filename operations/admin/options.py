"""Options of the administrator's account."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from iac.values import CRYPT_RE, SshPublicKey, Strict, Username, path_under


class AdminSection(Strict):
    name: Username = Field(
        description="Login of the human administrator (a real account with a home directory).",
        examples=["gts"],
    )
    ssh_authorized_keys: list[SshPublicKey] | None = Field(
        default=None,
        description=(
            "The only keys that may log in as the admin: a key not listed is drift, removed by a "
            "converge commit-confirm style (kept in the quarantine). Unset (not declared yet): the keys "
            "on the host are reported as drift naming this option, never removed; [] means no key at all."
        ),
        examples=[["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"]],
    )
    sudo: bool = Field(
        default=True,
        description="Member of group sudo (password required: the account has no NOPASSWD rule).",
        examples=[True],
    )
    groups: list[Username] = Field(
        default=[],
        description="Further supplementary groups, created by the services that own them.",
        examples=[["postgres"]],
    )
    shell: Annotated[str, path_under("/bin", "/usr/bin", example="/bin/bash", owned=False)] = Field(
        default="/bin/bash", description="Login shell (under /bin or /usr/bin).", examples=["/bin/bash"])
    password_hash: SecretStr | None = Field(
        default=None,
        description=(
            "SECRET. crypt(3) hash of the admin's password (for sudo), from the secrets file. "
            "Unset leaves the current password alone (how existing hosts are adopted)."
        ),
        examples=["$y$j9T$...(mkpasswd -m yescrypt)"], json_schema_extra={"canary": "crypt"},
    )

    @field_validator("password_hash")
    @classmethod
    def _crypt_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not CRYPT_RE.fullmatch(value.get_secret_value()):
            raise ValueError("is not a crypt(3) hash (it must start with '$' and the method, as `mkpasswd -m "
                             "yescrypt` prints it; a plain password is refused; example: '$y$j9T$...')")
        return value
