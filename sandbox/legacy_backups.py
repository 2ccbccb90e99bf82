"""Give the sandbox's LAN host the hand-made backup tooling the real gts-server runs today.

shared/runbooks/lan-host-gts-server.txt, "Backups (implemented)": the script
/usr/local/sbin/pg_backup_gts_databases.sh on pg-backup-gts.timer (hourly), restic-postgres.timer
(02:30), restic-postgres-check.timer (Sun 03:30), restic-system-state-backup.timer (02:20), written
by hand under those exact names, with dumps already on the disk under their own naming. The
converge must replace them in place: no second timer, no gap in the hourly dumps, the old dumps
and snapshots kept.

Usage: python -m sandbox.legacy_backups   (on a converged sandbox)
"""

from __future__ import annotations

import sys

from sandbox.world import World

HANDMADE_SCRIPT = r"""#!/bin/bash
# hand-made on gts-server (runbook: "Local Postgres backups")
set -euo pipefail
ROOT=/mnt/pg_backups/postgres
TS=$(date +%F_%H%M)
for db in gts_scheduler gingerich_trailer_rentals gts_shop_scheduler gingerich_trailer; do
  mkdir -p "$ROOT/db/$db"
  sudo -u postgres pg_dump -Fc "$db" > "$ROOT/db/$db/${db}_$TS.dump"
  pg_restore --list "$ROOT/db/$db/${db}_$TS.dump" >/dev/null
  sha256sum "$ROOT/db/$db/${db}_$TS.dump" > "$ROOT/db/$db/${db}_$TS.dump.sha256"
done
echo "backup done $TS" >> "$ROOT/logs/pg_backup.log"
"""

UNITS = {
    "pg-backup-gts": ("/usr/local/sbin/pg_backup_gts_databases.sh", "hourly"),
    "restic-postgres": ("/usr/local/sbin/restic_backup_postgres_dumps.sh", "*-*-* 02:30:00"),
    "restic-postgres-check": ("/usr/bin/restic check", "Sun *-*-* 03:30:00"),
    "restic-system-state-backup": ("/usr/local/sbin/restic-system-state-backup.sh", "*-*-* 02:20:00"),
}


def service(unit: str, command: str) -> str:
    return (f"[Unit]\nDescription={unit} (hand-made)\n\n[Service]\nType=oneshot\n"
            f"EnvironmentFile=-/etc/gts/backup/restic.env\nExecStart={command}\n")


def timer(unit: str, schedule: str) -> str:
    return f"[Timer]\nOnCalendar={schedule}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"


def install(world: World) -> list[str]:
    """Overwrite the LAN host's backup scripts and units with hand-made ones, enable their timers,
    run the dump once. Returns the hand-made dump files it made."""
    world.ssh("lan", "install -m 0755 /dev/stdin /usr/local/sbin/pg_backup_gts_databases.sh", input=HANDMADE_SCRIPT)
    for unit, (command, schedule) in UNITS.items():
        world.ssh("lan", f"cat > /etc/systemd/system/{unit}.service", input=service(unit, command))
        world.ssh("lan", f"cat > /etc/systemd/system/{unit}.timer", input=timer(unit, schedule))
    world.ssh("lan", "rm -f /etc/systemd/system/iac-backup-alert@.service && systemctl daemon-reload && "
                     f"systemctl enable --now {' '.join(u + '.timer' for u in UNITS)} && "
                     "mkdir -p /mnt/pg_backups/postgres/logs && systemctl start pg-backup-gts.service")
    return world.ssh("lan", "ls /mnt/pg_backups/postgres/db/*/*_????-??-??_????.dump").stdout.split()


def main() -> int:
    made = install(World())
    print(f"hand-made backup tooling installed on the LAN host; {len(made)} hand-made dumps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
