"""Exit codes of the release engine and the step each names (in the alert and the log)."""

from __future__ import annotations

EXIT_FETCH, EXIT_REVISION, EXIT_MIGRATE, EXIT_HEALTH, EXIT_PIP, EXIT_FRONTEND = 3, 4, 5, 6, 7, 8


EXIT_COMMAND, EXIT_STATIC, EXIT_ROLLBACK = 9, 10, 11


# the stage each exit code names, in the alert and the log
STEPS = {EXIT_FETCH: "fetch", EXIT_REVISION: "fetch (unknown revision)", EXIT_MIGRATE: "migrate",
         EXIT_HEALTH: "health check", EXIT_PIP: "build (pip install)", EXIT_FRONTEND: "build (front end)",
         EXIT_COMMAND: "release command", EXIT_STATIC: "build (collectstatic)", EXIT_ROLLBACK: "rollback",
         1: "a system command"}


class ReleaseFailed(Exception):
    """A stage failed; ``code`` is the exit status, the message says what and what is live."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
