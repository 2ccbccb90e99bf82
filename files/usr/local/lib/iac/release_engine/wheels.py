"""`wheels APP --python X.Y --glibc A.B`: whether the live release's requirements would install on
another Python (an upgrade's first check, run on the old host before anything is touched).

pip resolves the release's requirements.txt and extra requirements for that interpreter and for
the platform of that glibc (``--dry-run``: nothing is installed), from wheels only: the new host
has no compiler, so a requirement without a wheel for the new Python would have to be built there
and fails (typed-ast on Python 3.13). Run as the app, confined as its builds are.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys

from engine_common.safefs import read_app_file

from . import commands
from .build import pip_error
from .codes import EXIT_PIP
from .engine import Release
from .settings import Settings

VERSION = re.compile(r"3\.\d{1,2}")
GLIBC = re.compile(r"2\.\d{1,2}")
# manylinux tags before PEP 600 name these glibc versions
LEGACY = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}


def platforms(glibc: str, machine: str) -> list[str]:
    """Every platform tag a wheel may carry to run on a system with ``glibc`` (``2.41``)."""
    newest = int(glibc.split(".")[1])
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 4, -1)]
    tags += [f"{name}_{machine}" for minor, name in sorted(LEGACY.items(), reverse=True) if minor <= newest]
    return [*tags, f"linux_{machine}"]


def pip_command(s: Settings, requirements: str | None, python: str, glibc: str, machine: str) -> list[str]:
    """``pip install --dry-run`` of the requirements for CPython ``python`` on ``glibc``, wheels only."""
    cmd = [f"{s.venv_link}/bin/pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
           "--no-cache-dir", "--ignore-installed", "--only-binary=:all:", "--target", "/tmp/iac-wheels-check",
           "--python-version", python, "--implementation", "cp"]
    for abi in (f"cp{python.replace('.', '')}", "abi3", "none"):
        cmd += ["--abi", abi]
    for tag in platforms(glibc, machine):
        cmd += ["--platform", tag]
    return [*cmd, *(["-r", requirements] if requirements else []), *s.extra_requirements]


def wheels_command(s: Settings, args: list[str]) -> int:
    """0 every requirement has a wheel for that Python (or nothing is live), 7 one has none
    (pip's reason, which names it, on the last line), 2 usage."""
    python = args[args.index("--python") + 1] if "--python" in args[:-1] else ""
    glibc = args[args.index("--glibc") + 1] if "--glibc" in args[:-1] else ""
    if not (VERSION.fullmatch(python) and GLIBC.fullmatch(glibc)):
        print("usage: wheels APP --python 3.13 --glibc 2.41", file=sys.stderr)
        return 2
    current = Release(s).live()
    if current is None:
        return 0
    release = current[0]
    requirements = "requirements.txt" if read_app_file(release, "requirements.txt") is not None else None
    if requirements is None and not s.extra_requirements:
        return 0
    done = commands.run(commands.as_app(s, pip_command(s, requirements, python, glibc, platform.machine()), [],
                                        cwd=release), check=False, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, errors="replace")
    if done.returncode == 0:
        return 0
    sys.stderr.write(done.stdout)
    print(f"{s.app}: its requirements do not install on Python {python} from wheels{pip_error(done.stdout)}",
          file=sys.stderr)
    return EXIT_PIP
