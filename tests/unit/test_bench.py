"""`make bench` (cli/bench.py) without a host: what it reads from pyinfra's output."""

from __future__ import annotations


def test_bench_counts_remote_commands_per_host_from_pyinfras_debug_log() -> None:
    from cli.bench import remote_commands

    log = ("[pyinfra.connectors.ssh] Running command on srv1178562: (pty=None) sh -c 'uname -s'\n"
           "[pyinfra.connectors.ssh] Running command on gts-server: (pty=None) sh -c 'cat /etc/group'\n"
           "[pyinfra.connectors.ssh] Running command on srv1178562: (pty=None) sh -c 'dpkg -l'\n"
           "[pyinfra.api.facts] Getting fact: server.Os (ensure_hosts: None)\n")
    assert remote_commands(log) == {"srv1178562": 2, "gts-server": 1}
