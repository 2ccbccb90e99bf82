"""pyinfra's own CLI, with a plan (``--json``) that names each operation as each host declared it
and says what differs (iac/pyinfra_ext/plan_report.py, put in place by ``install(report=True)``).

Usage: python -m iac.pyinfra_ext.plan_runner INVENTORY deploy.py --dry --json   (any pyinfra arguments)
"""

from __future__ import annotations

import sys

from iac.pyinfra_ext import install

if __name__ == "__main__":
    # before pyinfra's CLI runs: its facts, helpers and plan output, as deploy.py's own install()
    # would put them (that call then finds everything in place)
    install(report=True)
    from pyinfra_cli.main import main

    sys.argv = ["pyinfra", *sys.argv[1:]]
    sys.exit(main())
