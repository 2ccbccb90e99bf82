"""The error every layer raises for bad configuration or input."""

from __future__ import annotations

from pyinfra.api.exceptions import PyinfraError


class ConfigError(PyinfraError):
    """Invalid configuration; the message is meant for the operator, one problem per line.

    A PyinfraError, so the pyinfra CLI prints just this message (no traceback) and exits 1."""
