"""The privilege boundary between an app and root, on the release side (issue 20).

Each test acts as the app's own user on the converged public host (what a web takeover or a bad
package in a build could do: plant a link, forge a record, run an install script), then runs the
root path that used to follow it (a converge, a release, the drift check). The target outside the
app's reach stays as it was, and the run either succeeds safely or fails naming the planted path.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.integration.conftest import Run, Sandbox, failure_excerpt

APP = "chip_dashboard"
VICTIM_FILE = "/etc/iac-victim"   # root's file: an app must never make root write, chown or remove it
VICTIM_DIR = "/srv/iac-victim"    # root's directory, beside the app's trees


def as_app(sandbox: Sandbox, script: str, check: bool = True):
    """``script`` in a shell as the app's user (no root involved)."""
    return sandbox.ssh("public", f"runuser -u {APP} -- sh -c {shlex.quote(script)}", check=check)


def victims(sandbox: Sandbox) -> str:
    """What the root-owned targets look like (owner, mode, content): compared before and after."""
    return sandbox.ssh("public", f"stat -c '%U %a %s' {VICTIM_FILE} {VICTIM_DIR} {VICTIM_DIR}/file && "
                                 f"cat {VICTIM_FILE} {VICTIM_DIR}/file && ls -a {VICTIM_DIR}").stdout


@pytest.fixture
def planted(sandbox: Sandbox, converged: Run):
    """Root's targets made fresh; afterwards, whatever the test planted is gone and the host is
    converged again (tests do not depend on each other's order)."""
    sandbox.ssh("public", f"printf 'root only\\n' > {VICTIM_FILE} && chmod 644 {VICTIM_FILE} && rm -rf {VICTIM_DIR} "
                          f"&& mkdir -m 755 {VICTIM_DIR} && printf 'keep\\n' > {VICTIM_DIR}/file")
    before = victims(sandbox)
    yield before
    assert victims(sandbox) == before, "a root-owned file or directory changed"
    sandbox.ssh("public", f"rm -rf {VICTIM_FILE} {VICTIM_DIR} {VICTIM_DIR}.damaged")
    run = sandbox.converge("boundary-cleanup", "--limit", "public")
    assert run.returncode == 0, failure_excerpt(run)


def live_release(sandbox: Sandbox) -> str:
    return sandbox.ssh("public", f"readlink /srv/apps/{APP}").stdout.strip()


def site(sandbox: Sandbox) -> str:
    """The page users get through nginx (the certificate is another test's business)."""
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sSk", "--max-time", "20", "--resolve", f"pravoo.in:443:{ip}",
                           "https://pravoo.in/"], capture_output=True, text=True, check=False).stdout


def test_a_venv_link_aimed_at_roots_directory_is_never_moved_or_removed(sandbox: Sandbox, planted: str) -> None:
    """Finding 1: the live release's .venv pointed at a directory of root's used to be taken for a
    damaged virtualenv, renamed to *.damaged and removed after the rebuild. Now the changed link is
    damage named by path, the rebuild uses the virtualenv root recorded, the directory stays."""
    as_app(sandbox, f"ln -sfn {VICTIM_DIR} {live_release(sandbox)}/.venv")
    drift = sandbox.drift("boundary-venv-link-drift", "--limit", "public")
    assert drift.returncode == 2 and "changed: .venv" in drift.output, drift.output[-2000:]
    run = sandbox.converge("boundary-venv-link-repair", "--limit", "public")
    assert run.returncode == 0, failure_excerpt(run)
    assert sandbox.ssh("public", f"test -e {VICTIM_DIR}.damaged", check=False).returncode != 0
    assert "chip_dashboard v2" in site(sandbox)
    assert sandbox.drift("boundary-venv-link-after", "--limit", "public").returncode == 0


def test_links_and_forged_records_in_the_apps_trees_are_never_written_through_or_believed(
        sandbox: Sandbox, planted: str) -> None:
    """Finding 2 and the forged records: links where the engine used to keep its lock, records and
    marks (aimed at root's file), and a forged deployed.json. Root's records live elsewhere: the
    forgeries change nothing the check says, and the rebuild they cause writes through none."""
    live = live_release(sandbox)
    venv = sandbox.ssh("public", f"readlink /srv/venvs/{APP}").stdout.strip()
    links = [f"/srv/releases/{APP}/{n}" for n in (".lock", "deployed.json.new", "failed.json", "repo.git.tmp")]
    links += [f"{live}/.iac-manifest.json", f"{live}/.iac-built", f"{venv}/.iac-packages", f"{venv}/.iac-complete"]
    forged = json.dumps({"commit": "0" * 40, "revision": "main", "inputs": "forged", "history": []})
    as_app(sandbox, " && ".join(f"ln -sfn {VICTIM_FILE} {p}" for p in links)
           + f" && printf '%s' {shlex.quote(forged)} > /srv/releases/{APP}/deployed.json")
    drift = sandbox.drift("boundary-links-drift", "--limit", "public")
    # the links planted inside the live release are its files now: damage, named; the forged
    # record beside it is nobody's record
    assert drift.returncode == 2 and "added: .iac-manifest.json" in drift.output, drift.output[-2000:]
    run = sandbox.converge("boundary-links-repair", "--limit", "public")
    assert run.returncode == 0, failure_excerpt(run)
    record = json.loads(sandbox.ssh("public", f"cat /var/lib/iac/releases/{APP}/deployed.json").stdout)
    assert record["commit"] != "0" * 40 and record["inputs"] != "forged"
    assert sandbox.ssh("public", f"stat -c '%U %a' /var/lib/iac/releases/{APP}").stdout.split() == ["root", "700"]
    assert "chip_dashboard v2" in site(sandbox)
    assert sandbox.drift("boundary-links-after", "--limit", "public").returncode == 0


def test_the_pinned_host_key_is_roots_and_a_planted_ssh_directory_stops_the_run(
        sandbox: Sandbox, planted: str) -> None:
    """Finding 3: known_hosts used to be uploaded into the app's ~/.ssh through whatever link was
    there, then chowned to the app. The pinned key is root's file now; a ~/.ssh the app replaced
    with a link is refused by name, never followed."""
    as_app(sandbox, f"rm -f ~/.ssh/known_hosts && ln -s {VICTIM_FILE} ~/.ssh/known_hosts")
    sandbox.ssh("public", f"rm -f /etc/iac/apps/{APP}.known_hosts")  # the converge must write it again
    run = sandbox.converge("boundary-known-hosts", "--limit", "public")
    assert run.returncode == 0, failure_excerpt(run)
    assert sandbox.ssh("public", f"stat -c '%U %a' /etc/iac/apps/{APP}.known_hosts").stdout.split() == ["root", "644"]
    # ~/.ssh itself swapped for a link to root's directory
    as_app(sandbox, f"mv ~/.ssh ~/.ssh.real && ln -s {VICTIM_DIR} ~/.ssh")
    try:
        sandbox.ssh("public", f"stat -c %U {VICTIM_DIR}")
        bad = sandbox.converge("boundary-ssh-dir-link", "--limit", "public")
        assert bad.returncode != 0 and f"/home/{APP}/.ssh exists and is not a directory" in bad.output, \
            bad.output[-3000:]
    finally:
        as_app(sandbox, "rm -f ~/.ssh && mv ~/.ssh.real ~/.ssh")


def test_a_packages_install_script_cannot_write_outside_the_release_being_built(
        sandbox: Sandbox, planted: str) -> None:
    """Builds run as the app under its units' confinement: `hostile` (v2 plus a dependency whose
    setup.py writes to the app's release tree, home, state directory, the virtualenvs and /etc)
    builds and goes live, and none of those files exists."""
    targets = [f"/srv/releases/{APP}/HOSTILE", f"/home/{APP}/HOSTILE", f"/var/lib/{APP}/HOSTILE",
               "/srv/venvs/HOSTILE", "/etc/HOSTILE", "/var/tmp/HOSTILE"]
    sandbox.ssh("public", "rm -f " + " ".join(targets))
    hostile = json.dumps({"public": {"apps": {APP: {"source": {"revision": "hostile"}}}}})
    run = sandbox.converge("boundary-hostile-build", "--limit", "public", SANDBOX_OVERRIDES=hostile)
    assert run.returncode == 0, failure_excerpt(run)
    assert "hostile-pkg" in sandbox.ssh("public", f"/srv/venvs/{APP}/bin/pip list 2>/dev/null").stdout.lower() \
        or "hostile_pkg" in sandbox.ssh("public", f"/srv/venvs/{APP}/bin/pip list 2>/dev/null").stdout.lower()
    found = sandbox.ssh("public", "ls -d " + " ".join(targets) + " 2>/dev/null", check=False).stdout
    assert found == "", f"the install script wrote outside its build: {found}"
    # an operator's manage.py command runs as confined (it may write the host's /tmp, nothing of the app's)
    wrote = sandbox.ssh("public", f"/usr/local/sbin/iac-manage {APP} shell -c "
                                  f"\"open('/srv/releases/{APP}/HOSTILE', 'w')\"", check=False)
    assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr + wrote.stdout
    assert sandbox.ssh("public", f"test -e /srv/releases/{APP}/HOSTILE", check=False).returncode != 0
