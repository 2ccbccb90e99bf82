"""Less CPU while pyinfra prepares: two of its helpers, made cheap, with the same results.

Profiling a converged drift check (cProfile, both sandbox hosts, 280 operations) showed most of
the controller's time in two pyinfra helpers that repeat work on every call:

* ``get_operation_order_from_stack`` builds ``inspect.stack()`` for every operation: that reads the
  source lines of every frame and searches ``sys.modules`` for each one's module (4,000
  ``inspect.getmodule`` calls, about a second on this machine). It needs only each frame's file
  name and line number, which the frames themselves hold.
* ``all_global_arguments`` evaluates the type hints of ``AllArguments`` again for every operation
  and fact (600 calls); they never change while pyinfra runs.

Both replacements return exactly what the originals return (tests/unit/test_fast_prepare.py
compares them), so operation order and hashes do not change.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import pyinfra
from pyinfra.api import util as pyinfra_util

# the modules themselves: ``pyinfra.api.operation`` is also the name of the decorator function that
# ``pyinfra.api`` exports, so ``from pyinfra.api import operation`` would give the function
arguments = importlib.import_module("pyinfra.api.arguments")
operation = importlib.import_module("pyinfra.api.operation")

_all_global_arguments = arguments.all_global_arguments


def operation_order_from_stack(state: Any) -> list[int]:
    """``pyinfra.api.util.get_operation_order_from_stack``, reading frames instead of ``inspect.stack()``."""
    frames = []
    frame = sys._getframe(1)  # the caller; pyinfra's own version starts one frame deeper, in pyinfra
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()

    i = 0
    # the first occurrence of the deploy file in the reversed stack (as pyinfra's does)
    if state.current_deploy_filename:
        for i, item in enumerate(frames):  # noqa: B007 (i is used after the loop, as upstream)
            if item.f_code.co_filename == state.current_deploy_filename:
                break

    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    for item in frames[i:]:
        if item.f_code.co_filename.startswith(pyinfra_util.PYINFRA_INSTALL_DIR):
            continue
        line_numbers.append(item.f_lineno)
    return line_numbers


@functools.cache
def all_global_arguments() -> list[tuple[str, type]]:
    """``pyinfra.api.arguments.all_global_arguments``, evaluated once."""
    return _all_global_arguments()


def install() -> None:
    """Use the cheap helpers (idempotent; deploy.py calls it)."""
    operation.get_operation_order_from_stack = operation_order_from_stack
    arguments.all_global_arguments = all_global_arguments
