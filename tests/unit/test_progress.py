"""Long runs show each operation as it starts (iac/progress.py): one live line on a terminal, one
plain line each otherwise; the whole output is kept for the caller."""

from __future__ import annotations

import io
import sys

from iac import progress

SCRIPT = ("import sys, time\n"
          "for op in ('Base system | Packages', 'Apps | chip_dashboard: release'):\n"
          "    print('--> Starting operation: ' + op, file=sys.stderr, flush=True)\n"
          "    print('    [srv] Success', flush=True)\n"
          "sys.exit(3)\n")


def test_each_operation_is_shown_as_it_starts_and_the_output_is_kept() -> None:
    out = io.StringIO()
    done = progress.run([sys.executable, "-c", SCRIPT], "release", out=out, live=False)
    assert out.getvalue() == "release: Base system | Packages\nrelease: Apps | chip_dashboard: release\n"
    assert done.returncode == 3 and done.stdout.count("Success") == 2 and "Starting operation" in done.stdout


def test_on_a_terminal_one_line_is_rewritten() -> None:
    out = io.StringIO()
    progress.run([sys.executable, "-c", SCRIPT], "dr deploy.py", out=out, live=True)
    assert out.getvalue().count("\r\033[K") == 3 and "\n" not in out.getvalue()
