"""pyinfra's own CLI, with a plan (``--json``) that names each operation as each host declared it
and says what differs (iac/pyinfra_ext/plan_report.py, put in place by ``install(report=True)``).

It ends the way pyinfra's CLI does (every ``atexit`` handler runs: the fact records are written,
iac/pyinfra_ext/fact_batch.py; output is flushed) but skips tearing the interpreter down, which
takes about 0.14 s after a plan and is on the drift check's critical path: the caller waits for
this process to end before it reports.

Usage: python -m iac.pyinfra_ext.plan_runner INVENTORY deploy.py --dry --json   (any pyinfra arguments)
"""

from __future__ import annotations

import atexit
import os
import sys

from iac.pyinfra_ext import install


def exit_now(code: int | str | None) -> None:
    """``sys.exit(code)`` without the interpreter's teardown: ``atexit`` handlers run, streams are
    flushed, then the process ends with ``code`` (a message is printed and ends it with 1, as
    ``sys.exit`` would)."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":
    # before pyinfra's CLI runs: its facts, helpers and plan output, as deploy.py's own install()
    # would put them (that call then finds everything in place)
    install(report=True)
    from pyinfra_cli.main import main

    sys.argv = ["pyinfra", *sys.argv[1:]]
    try:
        main()
    except SystemExit as ended:
        exit_now(ended.code)
    exit_now(0)
