"""Shared by every test: the host engines (files/usr/local/lib/iac/) importable by their package
names, as they are on a host (iac/engines.py puts them on the path)."""

import iac.engines  # noqa: F401
