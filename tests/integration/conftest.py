"""Integration tests run against the local sandbox only (sandbox/inventory.py), never production.

The session brings the sandbox up if needed (reusing a running one) and converges it once. Every
pyinfra run's output is kept under .sandbox/<name>/outputs/; when the session ends, after every
test, all of it and the fact records are searched for the sandbox's canary secrets (the fixture
canary_search: a leak is an error of the session, whichever tests ran and in whatever order).
With CI=true the sandbox is torn down at the end and checked for leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from iac.pyinfra_ext import fact_batch
from sandbox.world import World
from tests.canary_search import canaries, leaks_in_files, session_files

REPO = Path(__file__).resolve().parents[2]
SANDBOX_INVENTORY = "sandbox/inventory.py"
HOSTNAMES = {"public": "srv1178562", "lan": "gts-server"}
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("measured times")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label:<40} {seconds:7.1f} s")


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Sandbox:
    """The running sandbox as tests see it: the world, pyinfra runs and testinfra hosts."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.outputs = world.dir / "outputs"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self._count = len(list(self.outputs.iterdir()))
        self.kept: list[Path] = []  # this session's outputs, in order

    def keep(self, label: str, run: Run) -> Run:
        self._count += 1
        path = self.outputs / f"{self._count:03d}-{label}.log"
        path.write_text(
            f"$ {' '.join(run.args)}\nexit {run.returncode} in {run.seconds:.1f}s\n"
            f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}\n")
        self.kept.append(path)
        return run

    def command(self, label: str, args: list[str], cwd: Path = REPO, **env: str) -> Run:
        assert "inventory.py" not in args or SANDBOX_INVENTORY in args or any(
            a.endswith("sandbox/inventory.py") for a in args), "tests use the sandbox inventory only"
        full_env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
        full_env.update(env)
        started = time.monotonic()
        proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=1800, check=False)
        return self.keep(label, Run(args, proc.returncode, proc.stdout, proc.stderr,
                                    time.monotonic() - started))

    def converge(self, label: str = "converge", *extra: str, cwd: Path = REPO, **env: str) -> Run:
        """`pyinfra sandbox/inventory.py deploy.py -y` run from ``cwd`` (a repo_copy to break)."""
        return self.command(label, [str(REPO / ".venv/bin/pyinfra"), SANDBOX_INVENTORY,
                                    "deploy.py", "-y", *extra], cwd=cwd, **{"PYINFRA_PROGRESS": "off", **env})

    def converge_json(self, label: str) -> tuple[Run, dict]:
        run = self.converge(label, "--json")
        assert run.returncode == 0, run.output[-3000:]
        return run, json.loads(run.stdout)

    def drift(self, label: str = "drift", *extra: str, **env: str) -> Run:
        """`python -m cli.drift sandbox/inventory.py` (``extra``: e.g. "--limit", "public")."""
        return self.command(label, [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                    SANDBOX_INVENTORY, *extra], **env)

    def webhook_messages(self, path: str = "/api/webhooks/2/") -> list[str]:
        """Messages the Discord stand-in received on ``path`` so far (webhooks/2/: the hosts'
        operator alerts, backups.alerts; webhooks/3/: the CI drift job's)."""
        log = self.world.webhook_log
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
        return [json.loads(e["body"])["content"] for e in entries if path in e["path"]]

    def host(self, role: str):
        return testinfra.get_host(f"ssh://{self.world.name}-{role}",
                                  ssh_config=str(self.world.ssh_config))

    def ssh(self, role: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.world.ssh(role, command, check=check)


def repo_copy(tmp_path: Path) -> Path:
    """A copy of the repository's files (to break on purpose) that uses the running sandbox."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    dest = tmp_path / "repo"
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    (dest / ".sandbox").symlink_to(REPO / ".sandbox")  # same sandbox, same keys
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def served_serial(sandbox: Sandbox) -> str:
    """Serial of the certificate nginx on the public host serves for pravoo.in."""
    return subprocess.run(f"echo | openssl s_client -connect {sandbox.world.host_ip('public')}:443 "
                          "-servername pravoo.in 2>/dev/null | openssl x509 -noout -serial",
                          shell=True, capture_output=True, text=True, check=True).stdout.strip()


def serial_after_change(sandbox: Sandbox, before: str, timeout: float = 15) -> str:
    """The served serial once it differs from ``before`` (or the old one after ``timeout``):
    `systemctl reload nginx` returns before the new workers have taken over."""
    deadline = time.monotonic() + timeout
    while (now := served_serial(sandbox)) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    return now


def failure_excerpt(run: Run) -> str:
    """What to show of a failed pyinfra run: every line that names an error, then the tail. The
    whole output also goes to a file outside the sandbox (CI tears the sandbox down)."""
    keep = Path(os.environ.get("IAC_FAILED_RUNS_DIR", "/tmp")) / f"iac-failed-run-{os.getpid()}-{int(time.time())}.log"
    keep.write_text(run.output)
    marks = ("Error", "error:", "REFUSED", "REVERTED", "FAILED", "failed", "Traceback", "Exception")
    lines = [line for line in run.output.splitlines() if any(m in line for m in marks)
             and not line.lstrip().startswith(("Operation ", "Grand total"))]
    return ("\n".join(lines[-60:]) + f"\n--- tail (whole output: {keep}) ---\n" + run.output[-2500:])


def changed_operations(results: dict) -> list[str]:
    """'host: operation' for every operation that changed something in a --json run."""
    return [f"{h}: {op['name']}" for op in results["results"]["operations"] for h in op["success"]]


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (systemd-nspawn, network namespaces)")
    world = World()
    started = time.monotonic()
    world.up()
    sb = Sandbox(world)
    TIMINGS["sandbox up (hosts + stand-ins)"] = time.monotonic() - started
    yield sb
    if os.environ.get("CI") == "true":
        world.down()
        left = world.leftovers()
        assert not left, f"sandbox teardown left behind: {left}"


@pytest.fixture(scope="session")
def canary_search(sandbox: Sandbox) -> Iterator[None]:
    """At the end of the session, after every test: no canary secret in any output kept under
    .sandbox/<name>/outputs/ (every pyinfra run, drift check and make target, of this session
    and of earlier ones on the same sandbox) nor in any fact record. A leak fails the session
    (an error at teardown naming the file), whichever tests ran and in whatever order. Torn down
    before ``sandbox`` (which it uses), so before CI removes the sandbox's directory."""
    yield
    files = session_files(sandbox.outputs, fact_batch.RECORD_DIR)
    problems = []
    if unsearched := [p.name for p in sandbox.kept if p not in files]:
        problems.append(f"outputs of this session missing from the canary search: {unsearched}")
    if leaks := leaks_in_files(files, canaries(sandbox.world.secret_values())):
        problems.append(f"canary secrets found in this session's outputs or fact records: {leaks}")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture(autouse=True)
def _outputs_searched_at_the_end(request: pytest.FixtureRequest) -> None:
    """Every test that uses the sandbox brings in ``canary_search`` (once per session); a test
    that needs no sandbox (a few check the model only) brings up nothing."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("canary_search")


@pytest.fixture(scope="module")
def pebble_root(sandbox: Sandbox, tmp_path_factory) -> Path:
    """pebble's current root CA (regenerated each time pebble starts)."""
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    world = sandbox.world
    pem = subprocess.run(["curl", "-fsS", "--cacert", str(world.acme_ca_file),
                          f"https://{world.svc_ip}:15000/roots/0"], capture_output=True, text=True, check=True).stdout
    path.write_text(pem)
    return path


@pytest.fixture(scope="session")
def converged(sandbox: Sandbox) -> Run:
    """The first converge of this session (on a fresh sandbox: bare Debian to declared)."""
    # as on a fresh server: deploy keys first (registered on the forge), then everything
    run = sandbox.command("first-converge", [str(REPO / ".venv/bin/python"), "-m", "sandbox.converge"],
                          PYINFRA_PROGRESS="off")
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS["first converge of the session"] = run.seconds
    return run
