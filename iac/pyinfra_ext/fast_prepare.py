"""Less CPU while pyinfra prepares: three of its helpers, made cheap, with the same results.

Profiling a converged drift check (cProfile, both sandbox hosts, 280 operations) showed most of
the controller's time in pyinfra helpers that repeat work on every call:

* ``get_operation_order_from_stack`` builds ``inspect.stack()`` for every operation: that reads the
  source lines of every frame and searches ``sys.modules`` for each one's module (4,000
  ``inspect.getmodule`` calls, about a second on this machine). It needs only each frame's file
  name and line number, which the frames themselves hold.
* ``all_global_arguments`` evaluates the type hints of ``AllArguments`` again for every operation
  and fact (600 calls); they never change while pyinfra runs.
* ``pop_global_arguments`` (600 calls, one per operation and fact) looks each of the 32 global
  arguments up in the host's data with ``getattr(host.data, key)``. Each lookup calls the five
  data layers again (merging the host's group data into a new dict) and raises and catches a
  ``KeyError`` per layer that lacks the key, which is all of them here: 19,000 lookups, a third of
  the controller's time after the facts came back. The replacement reads the layers once per call.

The replacements return exactly what the originals return (tests/unit/test_fact_batch.py and
tests/unit/test_pyinfra_ext.py compare them), so operation order and hashes do not change.
``iac.pyinfra_ext.install()`` puts them in place (its ``PATCHES`` names each pyinfra symbol).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from copy import copy
from typing import Any

import pyinfra
from pyinfra.api import util as pyinfra_util
from pyinfra.context import ctx_config

# the modules themselves: ``pyinfra.api.operation`` is also the name of the decorator function that
# ``pyinfra.api`` exports, so ``from pyinfra.api import operation`` would give the function
arguments = importlib.import_module("pyinfra.api.arguments")
operation = importlib.import_module("pyinfra.api.operation")

_all_global_arguments = arguments.all_global_arguments
_pop_global_arguments = arguments.pop_global_arguments


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


def _host_defaults(layers: list[Any], keys: frozenset[str]) -> dict[str, Any]:
    """What ``getattr(host.data, key)`` finds for each of ``keys`` that some layer holds (the first
    layer holding it wins, as in ``HostData.__getattr__``), over layers already called. Plain
    dicts are intersected with the keys (no KeyError raised and caught per layer and key)."""
    found: dict[str, Any] = {}
    for layer in reversed(layers):
        if type(layer) is dict:
            for key in layer.keys() & keys:
                found[key] = layer[key]
            continue
        for key in keys:
            with contextlib.suppress(KeyError):
                found[key] = layer[key]
    return found


@functools.cache
def _global_keys() -> frozenset[str]:
    return frozenset(key for key, _ in all_global_arguments())


def pop_global_arguments(state: Any, host: Any, kwargs: dict[str, Any]) -> tuple[Any, list[str]]:
    """``pyinfra.api.arguments.pop_global_arguments`` (pyinfra 3.10), the host's data layers read
    once per call; the rest is upstream's, line for line."""
    config = state.config
    if ctx_config.isset():
        config = ctx_config.get()
        assert config is not None

    cdkwargs = host.current_deploy_kwargs
    meta_kwargs: dict[str, Any] = cdkwargs or {}
    host_defaults = _host_defaults([layer() if callable(layer) else layer for layer in host.data.datas],
                                   _global_keys())

    found: dict[str, Any] = {}
    found_keys: list[str] = []

    for key, type_ in all_global_arguments():
        argument_meta = arguments.all_argument_meta[key]
        handler = argument_meta.handler
        default: Any = argument_meta.default(config)

        if key in host_defaults:
            default = copy(host_defaults[key])

        if key in kwargs:
            found_keys.append(key)
            value = kwargs.pop(key)
        else:
            value = meta_kwargs.get(key, default)

        if handler:
            value = handler(config, value)

        if value != default:
            arguments.raise_if_bad_type(value, type_, arguments.ArgumentTypeError, f"Invalid argument `{key}`:")

        found[key] = value
    return found, found_keys
