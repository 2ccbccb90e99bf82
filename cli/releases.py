"""`make releases APP=x`: the app's live release and the ones live before it, newest first, with the
commit to give `make rollback APP=x TO=<commit>` (only a release still kept on the host can be
rolled back to without rebuilding).

Read from root's records on the host (the release engine's deployed.json and built/), which no
app can write.

Usage: python -m cli.releases INVENTORY APP [--format text|json]
Exit codes: 0 shown, 1 error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from cli.rollback import find_app
from iac.errors import ConfigError


def read(target, app: str) -> dict:  # noqa: ANN001
    """{"live": {...} | None, "before": [...], "kept": [release names]} from the host's records."""
    state = target.config.app_paths(app).state_dir
    done = target.ssh(f"cat {shlex.quote(state + '/deployed.json')} 2>/dev/null || echo null; "
                      f"echo; ls {shlex.quote(state + '/built')} 2>/dev/null || true")
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: cannot read {state}: {done.stderr.strip()[-300:]}")
    first, _, rest = done.stdout.partition("\n")
    deployed = json.loads(first or "null") or {}
    kept = sorted(n.removesuffix(".json") for n in rest.split() if n.endswith(".json"))
    live = ({"commit": deployed.get("commit"), "revision": deployed.get("revision"),
             "release": deployed.get("release"), "deployed_at": deployed.get("deployed_at")} if deployed else None)
    before = [dict(h, kept=h.get("release") in kept) for h in reversed(deployed.get("history") or [])
              if h.get("release") != deployed.get("release")]
    return {"host": target.name, "app": app, "live": live, "before": before, "kept": kept}


def text(found: dict) -> str:
    live = found["live"]
    if not live:
        return f"{found['host']}: {found['app']} has no live release yet"
    lines = [f"{found['host']}: {found['app']}",
             f"  live    {live['commit'][:12]}  since {live['deployed_at']}  (revision {live['revision']})"]
    for h in found["before"]:
        how = f"kept: make rollback TO={h['commit'][:12]}" if h["kept"] else "not kept (a release rebuilds it)"
        lines.append(f"  before  {h['commit'][:12]}  went live {h['deployed_at']}  {how}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.releases", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("app")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    try:
        found = read(find_app(args.inventory, args.app), args.app)
    except (ConfigError, json.JSONDecodeError) as e:
        print(f"releases: {e}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2) if args.format == "json" else text(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
