"""`make release APP=x [REV=y]` on the public host, and "release pending" for an app that follows a branch.

A new commit on the branch the stack declares (main) is reported by drift as a release pending
upstream, not as a change on the host. `make release` pins that commit in the sandbox's own stack
values (never in group_data/, which is production's), previews and applies that app only, and the
next drift check is clean. A revision that does not exist is refused before anything changes; a
release that fails leaves the old release serving and the stack's revision as it was.
"""

from __future__ import annotations

import json
import subprocess

from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox, failure_excerpt

APP = "chip_dashboard"
REPO_ON_FORGE = f"/srv/git/{APP}.git"


def _release(sandbox: Sandbox, label: str, *extra: str) -> Run:
    return sandbox.command(label, ["make", "-s", "release", f"APP={APP}", *extra], cwd=REPO,
                           IAC_OPERATOR="release-tester")


def _history(sandbox: Sandbox) -> list[dict]:
    run = sandbox.command("history-public", ["make", "-s", "history", "HOST=public", "FORMAT=json", "LINES=5"],
                          cwd=REPO)
    assert run.returncode == 0, run.output[-2000:]
    return json.loads(run.stdout)["hosts"]["srv1178562"]


def _drift(sandbox: Sandbox, label: str) -> Run:
    return sandbox.command(label, [str(REPO / ".venv/bin/python"), "-m", "cli.drift", SANDBOX_INVENTORY,
                                   "--limit", "public"])


def _deployed(sandbox: Sandbox) -> dict:
    return json.loads(sandbox.ssh("public", f"cat /var/lib/iac/releases/{APP}/deployed.json").stdout)


def _forge_git(sandbox: Sandbox, args: str) -> str:
    env = "GIT_COMMITTER_NAME=ci GIT_COMMITTER_EMAIL=ci@forge GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@forge"
    return sandbox.ssh("forge", f"cd {REPO_ON_FORGE} && runuser -u git -- env {env} git {args}").stdout.strip()


def _stack_revision(sandbox: Sandbox) -> str | None:
    path = sandbox.world.dir / "stack.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    return values.get("public", {}).get("apps", {}).get(APP, {}).get("source", {}).get("revision")


def _page(sandbox: Sandbox) -> str:
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sSk", "--max-time", "20", "--resolve", f"pravoo.in:443:{ip}",
                           "https://pravoo.in/"], capture_output=True, text=True, check=False).stdout


def test_a_new_upstream_commit_is_a_pending_release_and_make_release_pins_and_applies_it(
        sandbox: Sandbox, converged: Run) -> None:
    v2 = _forge_git(sandbox, "rev-parse 'v2^{commit}'")
    live = _deployed(sandbox)
    if (live.get("commit"), live.get("revision")) != (v2, "main") or _stack_revision(sandbox):
        (sandbox.world.dir / "stack.json").unlink(missing_ok=True)
        run = sandbox.converge("release-cmd-declared", "--limit", "public")
        assert run.returncode == 0, failure_excerpt(run)
    try:
        # someone pushes to main: same tree as v2, a new commit
        v3 = _forge_git(sandbox, "commit-tree 'v2^{tree}' -p 'v2^{commit}' -m 'chip_dashboard v3'")
        _forge_git(sandbox, f"update-ref refs/heads/main {v3}")
        drift = _drift(sandbox, "drift-release-pending")
        assert drift.returncode == 2, drift.output
        assert f"release pending: 'main' moved upstream from {v2[:12]} (live) to {v3[:12]}" in drift.stdout
        assert "nothing changed on the host" in drift.stdout

        # an unknown revision is refused before the stack or the host changes
        unknown = _release(sandbox, "make-release-unknown", "REV=no-such-tag")
        assert unknown.returncode != 0 and "has no tag or branch 'no-such-tag'" in unknown.stderr, unknown.output
        assert _stack_revision(sandbox) is None

        run = _release(sandbox, "make-release")
        assert run.returncode == 0, run.output[-3000:]
        TIMINGS["public: make release (new commit, same deps)"] = run.seconds
        # the preview came before the apply, and said what it would change
        assert run.stdout.index(f"the stack declares '{v3}'") < run.stdout.index(f"{APP} {v3[:12]} live")
        assert _stack_revision(sandbox) == v3
        # each of the app's operations was shown as it started (plain lines: not a terminal)
        shown = [line for line in run.stderr.splitlines() if line.startswith("release: ")]
        assert len(shown) >= 3, run.stderr[-2000:]
        assert subprocess.run(["git", "status", "--porcelain", "group_data"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout == "", "a sandbox release must not touch group_data/"
        assert _deployed(sandbox)["commit"] == v3
        assert "chip_dashboard v2" in _page(sandbox)
        # the host's history names the release, who made it and that it went live
        last = _history(sandbox)[-1]
        assert (last["what"], last["result"], last["who"]) == (f"release {APP} {v3}", "applied", "release-tester")

        # a release that fails (a migration that raises) keeps v3 serving and the stack at v3
        failed = _release(sandbox, "make-release-broken", "REV=broken")
        assert failed.returncode != 0, failed.output[-3000:]
        assert "FAILED" in failed.stderr and "put back" in failed.stderr
        assert _stack_revision(sandbox) == v3
        assert _deployed(sandbox)["commit"] == v3 and "chip_dashboard v2" in _page(sandbox)
        # the history: the failed release, then the app-only run that wrote back v3's settings
        failed_line, put_back = _history(sandbox)[-2:]
        assert failed_line["what"].startswith(f"release {APP} ") and failed_line["result"] == "failed", failed_line
        assert (put_back["what"], put_back["result"]) == (f"release {APP} {v3}", "applied"), put_back

        assert _drift(sandbox, "drift-after-make-release").returncode == 0
    finally:
        _forge_git(sandbox, f"update-ref refs/heads/main {v2}")
        (sandbox.world.dir / "stack.json").unlink(missing_ok=True)
        sandbox.ssh("public", f"rm -f /var/lib/iac/releases/{APP}/failed.json", check=False)
