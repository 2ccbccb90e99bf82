"""The command line: ``python -m sandbox.world up|down|status [--json]|...`` (the package's
docstring tells it all)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .addresses import HOSTS
from .common import WorldError
from .world import World


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sandbox.world", description=PACKAGE_DOC.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    st = sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    sub.add_parser("leftovers")
    fs = sub.add_parser("free-slot", help="print a free SANDBOX_NAME and SANDBOX_SUBNET")
    fs.add_argument("--prefix", default="sbx")
    sub.add_parser("ssh-config")
    bh = sub.add_parser("boot-host", help="boot one host (supervised: it comes back after a reboot) "
                                          "and wait until it is up")
    bh.add_argument("role", help=f"{', '.join(h.role for h in HOSTS)}, or a replica of the public host "
                                 "(public2, public3, ...)")
    bh.add_argument("--foreground", action="store_true",
                    help="be the host's supervisor: run its container from this process (what `up` starts)")
    bh.add_argument("--machine", help="with --foreground: the container's name, checked against "
                                      "SANDBOX_NAME (it names the process in ps)")
    ph = sub.add_parser("public-hosts", help="make the public host's replicas (N hosts in all), boot them, "
                                             "and print their roles")
    ph.add_argument("total", type=int)
    ph.add_argument("--debian", type=int, help="the release of replicas made now (default: the public host's)")
    sw = sub.add_parser("switch", help="after `make upgrade`: the new machine (a replica) takes the host's place "
                                       "and address; the old machine is retired")
    sw.add_argument("role")
    sw.add_argument("new")
    ar = sub.add_parser("add-repo", help="a local git repository onto the forge as APP.git (every branch and tag)")
    ar.add_argument("app")
    ar.add_argument("source")
    for verb in ("register-key", "unregister-key"):  # a deploy key added or deleted on the git host
        rk = sub.add_parser(verb)
        rk.add_argument("app")
        rk.add_argument("pubkey")
    args = p.parse_args(argv)
    try:
        if args.cmd == "free-slot":
            print(*World.free_slot(args.prefix))
            return 0
        world = World()
        if args.cmd == "up":
            world.up()
        elif args.cmd == "down":
            for line in world.down():
                print(f"removed {line}")
            left = world.leftovers()
            if left:
                print("LEFT BEHIND:\n  " + "\n  ".join(left), file=sys.stderr)
                return 1
            print(f"sandbox {world.name}: nothing left behind (checked netns, links, NAT, "
                  "mounts, loop devices, processes)")
        elif args.cmd == "leftovers":
            left = world.leftovers()
            print("\n".join(left) if left else "none")
            return 1 if left else 0
        elif args.cmd == "status":
            st = world.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print_status(st)
            # replicas (make bench HOSTS=N) run only while a bench needs them
            return 0 if all(st["hosts"][h.role]["up"] for h in HOSTS) else 3
        elif args.cmd == "ssh-config":
            print(world.ssh_config)
        elif args.cmd == "public-hosts":
            print(" ".join(world.ensure_public_hosts(args.total, args.debian)))
        elif args.cmd == "boot-host":
            world.spec(args.role)
            if args.machine not in (None, world.machine(args.role)):
                raise WorldError(f"boot-host: --machine={args.machine} is not {world.machine(args.role)} "
                                 f"(SANDBOX_NAME={world.name})")
            if args.foreground:
                return world.run_host(args.role)
            world.boot(args.role)
            world.wait_booted(args.role)
        elif args.cmd == "switch":
            world.switch_host(args.role, args.new)
        elif args.cmd == "register-key":
            world.register_key(args.app, args.pubkey)
        elif args.cmd == "add-repo":
            print(world.add_repo(args.app, Path(args.source)))
        elif args.cmd == "unregister-key":
            world.unregister_key(args.app, args.pubkey)
    except (WorldError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"sandbox: error: {exc}\n{detail}".rstrip(), file=sys.stderr)
        return 1
    return 0


def print_status(st: dict) -> None:
    print(f"sandbox {st['name']} ({st['subnet']})")
    for role, h in st["hosts"].items():
        state = "up" if h["up"] else "DOWN"
        print(f"  host {role:<8} {h['address']:<15} Debian {h['debian']:<3} {state:<5} {h['ssh']}")
    for label, s in st["standins"].items():
        print(f"  {label:<27} {'up' if s['up'] else 'DOWN':<5} {s['address']}")
