"""Every env file this repository writes on both hosts reads the same to each of its readers:
systemd (EnvironmentFile= of a transient unit), a shell that sources it (`. FILE`, as the runbook's
`source /etc/gts/backup/restic.env && restic snapshots` and operators do) and the engines' parser
(engine_common/envfile.py), and the app's secret key equals the sandbox's hostile canary byte for
byte. The canaries hold `$(touch /tmp/pwned)` and backquotes: nothing of them runs anywhere.
Values never leave the host: each reader's value is compared by sha256 computed there."""

from __future__ import annotations

import hashlib

from cli.preflight import load
from operations.backups.deploy import offsite_targets
from tests.integration.conftest import REPO, SANDBOX_INVENTORY, Run, Sandbox

# for each variable of FILE: its name and the sha256 of what systemd, sh and the engines' parser read
READERS = r"""
f=$1
for v in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$f"); do
  a=$(systemd-run --quiet --pipe --wait --collect -p EnvironmentFile="$f" /bin/sh -c "printf %s \"\$$v\"" \
      | sha256sum | cut -c1-64)
  b=$(sh -c ". '$f'; printf %s \"\$$v\"" | sha256sum | cut -c1-64)
  c=$(python3 -I -c 'import sys; sys.path.insert(0, "/usr/local/lib/iac")
from engine_common.envfile import parse_env_file
sys.stdout.write(parse_env_file(open(sys.argv[1]).read())[sys.argv[2]])' "$f" "$v" | sha256sum | cut -c1-64)
  echo "$v $a $b $c"
done
"""


def env_files(config) -> list[str]:
    files = [config.app_paths(name).env_file for name in config.apps]
    if config.backups is not None:
        files += [t.env_file for t in offsite_targets(config.backups).values()]
        if config.backups.alerts is not None:
            files.append(config.backups.alerts.env_file)
    return files


def test_every_env_file_reads_the_same_to_systemd_a_shell_and_the_engines(sandbox: Sandbox, converged: Run) -> None:
    _, hosts = load(str(REPO / SANDBOX_INVENTORY))
    secrets = sandbox.world.secret_values()
    sandbox.ssh("public", "rm -f /tmp/pwned")
    sandbox.ssh("lan", "rm -f /tmp/pwned")
    checked = 0
    for group, _name, data in hosts:
        config = data["config"]
        role = group
        for path in env_files(config):
            out = sandbox.world.ssh(role, f"bash -s -- {path}", input=READERS).stdout
            readings = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
            assert readings, (role, path)
            for var, (by_systemd, by_shell, by_engines) in readings.items():
                assert by_systemd == by_shell == by_engines, (role, path, var)
                checked += 1
            for app in config.apps:
                if path == config.app_paths(app).env_file:
                    key = secrets[group]["apps"][app]["secret_key"]
                    assert "$(touch /tmp/pwned)" in key and "`" in key
                    assert readings["DJANGO_SECRET_KEY"][0] == hashlib.sha256(key.encode()).hexdigest(), (role, app)
        assert sandbox.ssh(role, "test ! -e /tmp/pwned", check=False).returncode == 0, f"a value ran on {role}"
    assert checked >= 20, checked
