"""Options of the local PostgreSQL server (postgres)."""

from __future__ import annotations

from pydantic import (
    Field,
    model_validator,
)

from iac.values import Ident, Strict, option_error


class PostgresSection(Strict):
    """The local PostgreSQL server. Apps connect over the unix socket with peer authentication:
    no passwords exist to leak or rotate. Which system user may act as which role follows from the
    apps (an app's user may use the roles of its databases; pg_ident.conf map `iac`)."""

    roles: list[Ident] = Field(default=[], description="Login roles (no passwords: peer auth).",
                               examples=[["rental_scheduler_user"]])
    databases: dict[Ident, Ident] = Field(
        default={}, description="Database name -> owner role ('postgres' or one of `roles`).",
        examples=[{"gts_scheduler": "rental_scheduler_user", "gingerich_trailer": "postgres"}],
    )

    @model_validator(mode="after")
    def _owners_declared(self) -> PostgresSection:
        for db, owner in self.databases.items():
            if owner != "postgres" and owner not in self.roles:
                raise option_error(f"databases.{db}", f"owner {owner!r} is not in postgres.roles "
                                   f"{self.roles}: add it there, or make 'postgres' the owner")
        return self
