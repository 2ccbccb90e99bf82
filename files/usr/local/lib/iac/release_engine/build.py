"""Stage 2: the release built as the app user, confined: code, virtualenv, front end, static files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from engine_common.safefs import UnsafePath, owned_dir, read_app_file, remove_owned_tree

from . import commands
from .codes import EXIT_FRONTEND, EXIT_PIP, EXIT_STATIC, ReleaseFailed
from .decisions import short, venv_key
from .log import Log
from .manifest import venv_packages
from .records import Records
from .settings import Settings


class Building:
    """Stage 2: the release built as the app user, confined: code, virtualenv, front end, static files."""

    s: Settings
    log: Log
    records: Records

    # 2. build
    def built_venv(self, release: Path) -> Path | None:
        """The virtualenv of a release root recorded as built, if that release is still the app's
        directory; None when it must be built."""
        built = self.records.built(release.name)
        return Path(built["venv"]) if built and owned_dir(release, self.s.uid) else None


    def build(self, commit: str, release: Path) -> Path:
        """The release directory with its code, virtualenv, front end and static files; returns
        its virtualenv. Every step runs as the app user, confined to what it builds."""
        s = self.s
        if venv := self.built_venv(release):
            return venv
        self.log(f"building release {short(commit)} ({s.revision})")
        self.as_user("rm", "-rf", "--", str(release))
        self.as_user("mkdir", "--", str(release))
        archive = ["sh", "-c", 'git -C "$0" archive "$1" | tar -x -C "$2"', str(self.mirror), commit, str(release)]
        commands.run(commands.as_app(s, archive, [release]))
        venv = self.virtualenv(release)
        self.as_user("ln", "-sfn", "--", str(venv), str(release / ".venv"))
        if s.frontend_inputs is not None:
            self.frontend(commit, release)
        self.log("collectstatic")
        code = release / s.manage_dir
        static_root = code / s.static_dir
        collect = [f"{venv}/bin/python", "manage.py", "collectstatic", "--noinput", "-v", "0"]
        commands.run(commands.with_app_env(s, collect, code, {s.static_root_env: str(static_root)}
                                           if s.static_root_env else None, writable=[release]))
        if not static_root.is_dir() or not any(static_root.iterdir()):
            raise ReleaseFailed(EXIT_STATIC, f"collectstatic wrote nothing to {s.static_dir} (static_dir): set it to "
                                             "the app's STATIC_ROOT; the live release is untouched")
        # the manifest is recorded when it goes live (release commands may still write into it)
        self.records.set_built(release.name, {"venv": str(venv), "manifest": None, "commit": commit})
        return venv


    def virtualenv(self, release: Path) -> Path:
        s = self.s
        requirements = read_app_file(release, "requirements.txt")
        python = commands.run(["python3", "--version"], capture_output=True, text=True).stdout.strip()
        key = venv_key(requirements or b"", python + chr(10), s.extra_requirements)
        venv = s.venv_link.parent / f".{s.app}-{key}"
        if self.records.venv(venv) is not None and owned_dir(venv, s.uid):
            return venv
        # a virtualenv is not relocatable: it is built at its final path, recorded when complete
        self.log(f"creating virtualenv {venv} (requirements changed)")
        if os.path.lexists(venv) and not remove_owned_tree(venv, s.uid):
            raise UnsafePath(venv, "not a directory of the app's")
        commands.run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0755", str(venv)])
        pip = [f"{venv}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
        steps = [["python3", "-m", "venv", str(venv)],
                 *([[*pip, "-r", str(release / "requirements.txt")]] if requirements is not None else []),
                 *([[*pip, *s.extra_requirements]] if s.extra_requirements else [])]
        # pip may write the virtualenv and the release being built (a local package's build) only
        for step in steps:
            done = commands.run(commands.as_app(s, step, [venv, release], cwd=release), check=False,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            sys.stderr.write(done.stdout)
            if done.returncode != 0:
                remove_owned_tree(venv, s.uid)
                raise ReleaseFailed(EXIT_PIP, f"pip install failed on {python}{pip_error(done.stdout)}; "
                                              "the live release is untouched")
        self.records.set_venv(venv, venv_packages(venv))
        return venv


    def frontend(self, commit: str, release: Path) -> None:
        """npm ci / npm run build, or the outputs of a build with the same inputs (by content:
        git's object ids of every file under the declared paths in this commit)."""
        s = self.s
        tree = self.git("-C", str(self.mirror), "ls-tree", "-r", commit, "--", "package.json", "package-lock.json",
                        *(s.frontend_inputs or []), capture=True).stdout
        buildhash = hashlib.sha256(tree.encode()).hexdigest()[:16]
        built = s.releases / f".frontend-{buildhash}"
        if self.records.frontend(buildhash) is not None and owned_dir(built, s.uid):
            self.log(f"front-end build reused: its inputs are unchanged (build {buildhash})")
            self.as_user("touch", "--", str(built))
        else:
            lock = b"".join(read_app_file(release, n) or b"" for n in ("package.json", "package-lock.json"))
            modules = s.releases / f".node_modules-{hashlib.sha256(lock).hexdigest()[:16]}"
            if not owned_dir(modules, s.uid):
                self.log("npm ci (package.json or package-lock.json changed)")
                self.as_user("rm", "-rf", "--", str(modules))
                npm_ci = ["sh", "-c", "npm ci --no-audit --no-fund --loglevel=error && mkdir -p node_modules"]
                if commands.run(commands.as_app(s, npm_ci, [release], cwd=release), check=False).returncode != 0:
                    raise ReleaseFailed(EXIT_FRONTEND, "npm ci failed; the live release is untouched")
                self.as_user("mv", "-T", "--", str(release / "node_modules"), str(modules))
            self.as_user("touch", "--", str(modules))
            self.as_user("ln", "-sfn", "--", str(modules), str(release / "node_modules"))
            self.log(f"npm run build (inputs changed: build {buildhash})")
            # the build may write the release and its node_modules (tools keep caches there)
            if commands.run(commands.as_app(s, ["npm", "run", "--silent", "build"], [release, modules], cwd=release),
                   check=False).returncode != 0:
                raise ReleaseFailed(EXIT_FRONTEND, "npm run build failed; the live release is untouched")
            self.records.forget("frontend", buildhash)
            self.as_user("rm", "-rf", "--", str(built))
            self.as_user("mkdir", "--", str(built))
            for out in s.frontend_outputs:
                if not (release / out).exists():
                    raise ReleaseFailed(EXIT_FRONTEND, f"npm run build did not write {out} (frontend_build.outputs); "
                                                       "the live release is untouched")
                commands.run(commands.as_user(s.user, ["mkdir", "-p", str((built / out).parent)]))
                commands.run(commands.as_user(s.user, ["cp", "-a", str(release / out), str(built / out)]))
            self.records.set_frontend(buildhash)
        for out in s.frontend_outputs:
            if not (release / out).exists():
                commands.run(commands.as_user(s.user, ["mkdir", "-p", str((release / out).parent)]))
                commands.run(commands.as_user(s.user, ["cp", "-a", str(built / out), str(release / out)]))


def pip_error(output: str) -> str:
    """pip's own reason, for the one line the operator reads (``: ERROR: No matching distribution
    found for X==1``): its last ERROR line, which names the requirement, printable characters only
    (a package's output is the app's, not ours)."""
    for line in reversed(output.splitlines()):
        if line.startswith("ERROR:"):
            text = "".join(c if c.isprintable() else "?" for c in line)
            return f": {text[:300]}"
    return ""
