"""Paths on the hosts that more than one part of the repository names, derived here once."""

from __future__ import annotations

# rendered files wait here until their check passes (iac/guarded.py validated_file(s))
STAGED = "/etc/iac/staged"
