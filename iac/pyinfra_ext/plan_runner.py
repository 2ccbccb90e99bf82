"""pyinfra's own CLI, with a plan (``--json``) that names each operation as each host declared it
and says what differs (iac/pyinfra_ext/plan_report.py, put in place by ``install(report=True)``).

It ends the way pyinfra's CLI does (every ``atexit`` handler runs: the fact records are written,
iac/pyinfra_ext/fact_batch.py; output is flushed) but skips tearing the interpreter down
(iac/exits.py: about 0.14 s after a plan, on the drift check's critical path).

Usage: python -m iac.pyinfra_ext.plan_runner INVENTORY deploy.py --dry --json   (any pyinfra arguments)
"""

from __future__ import annotations

import sys

from iac.exits import exit_now
from iac.pyinfra_ext import install

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
