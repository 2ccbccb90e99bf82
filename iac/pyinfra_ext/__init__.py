"""The pyinfra extension layer: what it replaces in pyinfra, for which pyinfra, and its one install().

pyinfra is patched in one place, here. ``install()`` (deploy.py calls it; the plan runner calls
it with ``report=True``) puts in place:

* **facts** (fact_batch.py): facts from a batch and a cache, a few commands per host;
* **prepare** (fast_prepare.py): cheaper copies of three of pyinfra's helpers (same results);
* **sudo** (sudo_stdin.py): a sudo password on the SSH channel's stdin, never in a command line
  (on even with ``IAC_PYINFRA_EXT=off``: it changes how a password travels, not any answer);
* **report**, only with ``report=True`` (plan_report.py): the plan runner's ``--json`` plan names
  each operation per host and says what differs (``host_names``, ``host_details``).

Every pyinfra symbol the layer replaces is in ``PATCHES``, and every private one it reads
(without replacing it) is in ``READS``. The layer was written against pyinfra's internals at one
version, so ``install()`` first checks the installed pyinfra against ``TESTED_SERIES`` and that each
of those symbols exists. If either check fails it installs nothing, says why once on pyinfra's
logger, and pyinfra runs its own code: slower, the same answers.

``IAC_PYINFRA_EXT=off`` turns facts and prepare off: pyinfra's own code decides every change, to
compare with (``IAC_FACT_BATCH=off``, the switch's old name, does the same). The report hooks stay
on with it: they wrap pyinfra's own functions and only add to their output, so a plan made with
the switch off can still be compared with one made with it on.

This module imports nothing from pyinfra or from the rest of this package until ``install()``
runs (the checks come before any of it is imported).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Any

# the pyinfra release series the layer was written and tested against (its private symbols differ
# between minor releases): 3.10.x, any patch release of it
TESTED_SERIES = (3, 10)
TESTED_RANGE = f">={TESTED_SERIES[0]}.{TESTED_SERIES[1]},<{TESTED_SERIES[0]}.{TESTED_SERIES[1] + 1}"
TESTED_LABEL = f"{TESTED_SERIES[0]}.{TESTED_SERIES[1]}.x"

SWITCH = "IAC_PYINFRA_EXT"  # "off": pyinfra's own code paths
OLD_SWITCH = "IAC_FACT_BATCH"  # its old name, still honoured

# every warning install() gives ends with this (cli/drift.py passes such lines on)
NOTICE = "running on pyinfra's own code paths (slower, same answers)"

logger = logging.getLogger("pyinfra")


@dataclass(frozen=True)
class Patch:
    """One pyinfra symbol the layer replaces, and with what.

    ``target`` is ``module:name`` or ``module:Class.name``; the replacement is ``supplier.attribute``
    (a module of this package), or, when ``wraps``, what ``supplier.attribute(current)`` returns:
    a wrapper around pyinfra's own function."""

    target: str
    part: str  # "facts", "prepare" or "report"
    supplier: str
    attribute: str
    wraps: bool = False


PATCHES: tuple[Patch, ...] = (
    # facts: served from the batch and the cache; a command or an upload forgets a host's cached facts
    Patch("pyinfra.api.facts:_get_fact", "facts", "fact_batch", "_get_fact"),
    Patch("pyinfra.api.host:Host.run_shell_command", "facts", "fact_batch", "_changes_host", wraps=True),
    Patch("pyinfra.api.host:Host.put_file", "facts", "fact_batch", "_changes_host", wraps=True),
    # prepare: the same results, less CPU; pop_global_arguments in every module that imported it by name
    Patch("pyinfra.api.operation:get_operation_order_from_stack", "prepare", "fast_prepare",
          "operation_order_from_stack"),
    Patch("pyinfra.api.arguments:all_global_arguments", "prepare", "fast_prepare", "all_global_arguments"),
    *(Patch(f"{module}:pop_global_arguments", "prepare", "fast_prepare", "pop_global_arguments")
      for module in ("pyinfra.api.arguments", "pyinfra.api.operation", "pyinfra.api.facts", "pyinfra.api.deploy")),
    # sudo: the password on stdin (sudo -S), not in pyinfra's env/askpass command line
    Patch("pyinfra.connectors.ssh:SSHConnector.run_shell_command", "sudo", "sudo_stdin", "run_shell_command",
          wraps=True),
    # report (the plan runner only): per-host names and details in the --json plan
    Patch("pyinfra_cli.prints:build_plan_json", "report", "plan_report", "with_host_names", wraps=True),
    Patch("pyinfra.api.host:Host.noop", "report", "plan_report", "with_noop_details", wraps=True),
)

# pyinfra's private (or internal) symbols the layer reads without replacing them, by part. Instance
# attributes cannot be checked before a run and are not listed: State.current_stage,
# current_deploy_filename, current_op_file_number, failed_hosts, op_meta, ops; Host.connected,
# current_op_hash, current_op_global_arguments, current_deploy_kwargs; HostData.datas.
READS: tuple[tuple[str, str], ...] = (
    ("pyinfra.api.facts:_make_command", "facts"),
    ("pyinfra.api.facts:_handle_fact_kwargs", "facts"),
    ("pyinfra.api.facts:_MISSING_COMMAND_MARKER", "facts"),
    ("pyinfra.api.arguments:CONNECTOR_ARGUMENT_KEYS", "facts"),
    ("pyinfra.api.state:StateStage.Prepare", "facts"),
    ("pyinfra.api.state:StateStage.Execute", "facts"),
    ("pyinfra.context:ContextObject._get_module", "facts"),
    ("pyinfra.api.arguments:all_argument_meta", "prepare"),
    ("pyinfra.api.arguments:raise_if_bad_type", "prepare"),
    ("pyinfra.api.arguments:ArgumentTypeError", "prepare"),
    ("pyinfra.api.util:PYINFRA_INSTALL_DIR", "prepare"),
    ("pyinfra.context:ctx_config", "prepare"),
    ("pyinfra:is_cli", "prepare"),
    ("pyinfra.connectors.util:make_unix_command", "sudo"),
    ("pyinfra.api.state:State.get_op_data_for_host", "report"),
    ("pyinfra.context:ctx_host", "report"),
)

RUN_PARTS = ("facts", "prepare")
SAFETY_PARTS = ("sudo",)  # on whatever the switch says
REPORT_PARTS = ("report",)

_ORIGINALS: dict[str, Any] = {}  # target -> what was there before install() replaced it
_INSTALLED: dict[str, Any] = {}  # target -> what install() put there
_SAID: set[str] = set()


def _switched_off_by() -> str | None:
    return next((name for name in (SWITCH, OLD_SWITCH) if os.environ.get(name) == "off"), None)


def enabled() -> bool:
    """Whether the facts and prepare parts may run (``IAC_PYINFRA_EXT=off`` or its old name turn them off)."""
    return _switched_off_by() is None


def installed_pyinfra() -> str:
    """The installed pyinfra's version."""
    return importlib.metadata.version("pyinfra")


def tested(version: str) -> bool:
    """Whether ``version`` is in ``TESTED_RANGE`` (a version that cannot be read is not)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(TESTED_RANGE).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _say_once(level: int, message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        logger.log(level, message)


def _split(target: str) -> tuple[str, list[str]]:
    module, _, path = target.partition(":")
    return module, path.split(".")


def _lookup(target: str) -> Any:
    """The object at ``target``; raises ImportError or AttributeError when it is not there."""
    module, path = _split(target)
    found: Any = importlib.import_module(module)
    for name in path:
        found = getattr(found, name)
    return found


def _missing(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """The first symbol of these parts that pyinfra lacks, and what the layer does with it."""
    wanted = [(p.target, "replaces") for p in PATCHES if p.part in parts]
    wanted += [(target, "reads") for target, part in READS if part in parts]
    for target, use in wanted:
        try:
            _lookup(target)
        except (ImportError, AttributeError):
            return target, use
    return None


def _place(target: str, value: Any) -> None:
    module, path = _split(target)
    owner: Any = importlib.import_module(module)
    for name in path[:-1]:
        owner = getattr(owner, name)
    setattr(owner, path[-1], value)


def _current(target: str) -> Any:
    """What is at ``target`` now (None when it is not there)."""
    try:
        return _lookup(target)
    except (ImportError, AttributeError):
        return None


def install(*, report: bool = False) -> None:
    """Put the layer in place: facts and prepare (unless switched off), sudo, and with ``report=True``
    the plan runner's report hooks. Idempotent: deploy.py runs it once for each host.

    Outside ``TESTED_RANGE``, or when pyinfra lacks a symbol the requested parts replace or read,
    nothing is installed (not even part of it) and a warning says so once: pyinfra then runs its
    own code, with the same answers."""
    if switch := _switched_off_by():
        _say_once(logging.INFO, f"{switch}=off: {NOTICE}")
    _install((() if switch else RUN_PARTS) + SAFETY_PARTS + (REPORT_PARTS if report else ()))


def install_sudo() -> None:
    """Only the sudo part (the inventory puts it in place for a host reached through sudo, so that
    every pyinfra command, ``pyinfra INVENTORY fact ...`` included, sends the password on stdin)."""
    _install(SAFETY_PARTS)


def _install(parts: tuple[str, ...]) -> None:
    todo = [p for p in PATCHES if p.part in parts
            and (p.target not in _INSTALLED or _current(p.target) is not _INSTALLED[p.target])]
    if not todo:
        return
    version = installed_pyinfra()
    if not tested(version):
        _say_once(logging.WARNING, f"pyinfra {version} is outside the range this extension was tested with "
                                   f"({TESTED_LABEL}): {NOTICE}")
        return
    if missing := _missing(parts):
        target, use = missing
        _say_once(logging.WARNING, f"pyinfra {version} has no {target.replace(':', '.')}, which this extension "
                                   f"{use}: {NOTICE}")
        return
    for patch in todo:
        supplier = importlib.import_module(f"{__name__}.{patch.supplier}")
        current = _lookup(patch.target)
        if patch.target in _INSTALLED and current is _INSTALLED[patch.target]:
            continue  # put there meanwhile (deploy.py runs once per host, in greenlets): never wrapped twice
        replacement = getattr(supplier, patch.attribute)
        if patch.wraps:
            replacement = replacement(current)
        _ORIGINALS.setdefault(patch.target, current)
        _place(patch.target, replacement)
        _INSTALLED[patch.target] = replacement
    if "report" in parts:
        importlib.import_module(f"{__name__}.plan_report").attach_diff_capture()


def uninstall() -> None:
    """pyinfra's own functions back where install() replaced them, the report's log handler off
    (tests: each starts from pyinfra as it is)."""
    for target in reversed(list(_INSTALLED)):
        if _current(target) is _INSTALLED[target]:
            _place(target, _ORIGINALS[target])
    _INSTALLED.clear()
    _ORIGINALS.clear()
    pyinfra_logger = logging.getLogger("pyinfra")
    for handler in list(pyinfra_logger.handlers):
        if type(handler).__module__ == f"{__name__}.plan_report":
            pyinfra_logger.removeHandler(handler)


def installed() -> list[str]:
    """The targets of ``PATCHES`` that the layer replaces now."""
    return [p.target for p in PATCHES if p.target in _INSTALLED and _current(p.target) is _INSTALLED[p.target]]


def deploy_loaded(host: Any) -> None:
    """Say that the deploy file ran to its end for this host (deploy.py's last line): the fact
    batch then ages its record of what the host asked for (nothing when the batch is not in place)."""
    if "pyinfra.api.facts:_get_fact" in installed():
        importlib.import_module(f"{__name__}.fact_batch").deploy_loaded(host)
