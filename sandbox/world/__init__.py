"""The local sandbox: real Debian hosts under systemd-nspawn, and the stand-ins they talk to.

Each declared host runs Debian 12 unless ``SANDBOX_DEBIAN`` says otherwise when its disk is made
(``13``, or per host ``public=13,lan=12``); the release is recorded in the ledger and the sandbox's
inventory declares it (``host.debian``).

Everything this package creates is recorded in ``.sandbox/<name>/state.json`` *before* it is
created, so ``down`` can remove exactly that (and nothing else) in reverse order, even after a
half-finished ``up``. Processes are ended by PID only, and only when the PID still belongs to
the process that was started (its start time in /proc is recorded with it).

Layout for SANDBOX_SUBNET=10.213.0.0/16 (the default) and SANDBOX_NAME=sbx:

    10.213.0.1        on the machine's loopback: pebble, challtestsrv DNS, webhook
    10.213.0.2        on the machine's loopback: S3 (moto), an address of its own
    10.213.1.2        host "public" (netns sbx-public, veth sbx-pub  <-> eth0)
    10.213.2.2        host "lan"    (netns sbx-lan,    veth sbx-lan  <-> eno1)
    10.213.3.2        host "forge"  (netns sbx-forge,  veth sbx-git  <-> eth0): git over SSH
    10.213.(10+N).2   host "publicN", N = 2..39 (netns sbx-publicN, veth sbx-pN): replicas of
                      "public" for `make bench HOSTS=N`, made only by ``public-hosts N``

A sandbox keeps the subnet it was created with (state.json records it): ``up`` with another
SANDBOX_SUBNET is refused before anything changes.

Each host's process is a small supervisor (``boot-host ROLE --foreground``) that runs
systemd-nspawn and boots the container again when it reboots itself (nspawn exits 133), as a
real server comes back after ``reboot``; SIGTERM to it shuts the container down cleanly.

The package holds one module per concern; ``World`` (world.py) composes their mixins:

    common.py     REPO, WorldError, run, log, port_open, wait_port
    addresses.py  addresses, names and paths of hosts, stand-ins and files (HostSpec, HOSTS)
    ledger.py     the state ledger, .sandbox/<name>/state.json (and the subnet it records)
    registry.py   the machine-wide registry of sandboxes, /run/iac-sandbox
    image.py      the golden images, one per release (IMAGE_RECIPE, IMAGE_CACHE), each host's release
    processes.py  processes: started, recorded with their start time, stopped by PID
    hosts.py      hosts: rootfs, network, boot, the supervisor (run_host), stop/reset, ssh, wait
    disk.py       the LAN host's dump disk: image, loop mount, detach/attach (move_mount_into)
    standins.py   pebble with challtestsrv, S3 (moto), the webhook receiver
    forge.py      the git forge: fixture repositories, deploy keys
    lifecycle.py  up, down, leftovers, status
    cli.py        the command line (__main__.py runs it)

Usage: python -m sandbox.world up|down|status [--json]|ssh-config|register-key APP PUBKEY
                               |unregister-key APP PUBKEY|add-repo APP SOURCE|public-hosts N
                               |boot-host ROLE [--foreground]
"""

from .addresses import HOSTS, HostSpec
from .cli import main, print_status
from .common import REPO, WorldError, log, port_open, run, wait_port
from .disk import move_mount_into
from .hosts import PR_SET_PDEATHSIG
from .hosts import _die_with_parent as _die_with_parent
from .image import IMAGE_CACHE, IMAGE_RECIPE
from .world import World

__all__ = [
    "HOSTS", "IMAGE_CACHE", "IMAGE_RECIPE", "PR_SET_PDEATHSIG", "REPO", "HostSpec", "World", "WorldError",
    "log", "main", "move_mount_into", "port_open", "print_status", "run", "wait_port",
]
