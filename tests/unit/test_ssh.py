"""How this machine reaches a host (iac/ssh.py): the inventory entry's user, key, known hosts and
host key checking, never a prompt; root through sudo where the entry says so."""

from __future__ import annotations

from iac.ssh import ssh_argv


def test_the_command_line_follows_the_inventory_entry() -> None:
    data = {"ssh_hostname": "gts-server", "ssh_user": "gts", "ssh_key": "/k/id", "ssh_known_hosts_file": "/k/kh",
            "ssh_strict_host_key_checking": "yes", "_sudo": True}
    argv = ssh_argv(data)
    assert argv[0] == "ssh" and argv[-1] == "gts@gts-server"
    assert argv[1:3] == ["-o", "BatchMode=yes"] and "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-i") + 1] == "/k/id" and "UserKnownHostsFile=/k/kh" in argv
    on_port = ssh_argv(data, port=2222)
    assert on_port[on_port.index("-p") + 1] == "2222"


def test_a_host_without_a_user_or_key_is_reached_plainly() -> None:
    assert ssh_argv({"ssh_hostname": "10.0.0.2"}) == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                                                      "10.0.0.2"]
