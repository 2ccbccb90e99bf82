# Managed by this repo. The public VPS srv1178562 (pravoo.in), runbook:
# shared/runbooks/public-host-chip_dashboard.txt. Types, defaults and meaning: docs/options.md.

# The hosts of this group: inventory name (= /etc/hostname) -> the values that differ on that host,
# merged over this file's. A second VPS of this stack is one more entry, e.g.
#   "srv2": {"apps": {"chip_dashboard": {"allowed_hosts": ["b.pravoo.in"],
#                                        "nginx": {"server_names": ["b.pravoo.in"]}}}},
# and its address in inventory.py.
hosts = {
    "srv1178562": {},
}

# What an operator must confirm on the server before the first production run: option -> how.
# `make preflight` fails while this stack still has the value declared here; once confirmed (and
# corrected above if it differed), remove the entry.
confirm = {
    "apps.chip_dashboard.source.url": "git -C /root/Chips_dashboard remote get-url origin",
}

host = {
    # the release srv1178562 runs; moving it to 13 is `make upgrade HOST=public` (README: upgrading)
    "debian": 12,
}

admin = {
    # The runbook works as root; the repo adds a named admin account beside it.
    "name": "ops",
}

tls = {
    "email": "admin@pravoo.in",
}

apps = {
    "chip_dashboard": {
        "user": "chip_dashboard",  # the runbook ran it as root
        "source": {
            # to confirm on the server before the first production run: see `confirm` below
            "url": "git@github.com:pravoo/Chips_dashboard.git",
            "revision": "main",  # runbook: git pull origin main
        },
        "manage_dir": "chip_dashboard",
        "settings_module": "broker_portal.settings",
        "wsgi_app": "broker_portal.wsgi:application",
        "unit": "broker_portal",
        "workers": 3,
        "timeout": 60,
        "allowed_hosts": ["pravoo.in", "72.61.148.117"],
        # today's state: SQLite (USE_SQLITE=1); moved out of /root into the app's state dir
        "database": {
            "engine": "sqlite",
            "path": "/var/lib/chip_dashboard/db.sqlite3",
            "adopt_from": "/root/Chips_dashboard/chip_dashboard/db.sqlite3",
        },
        "nginx": {"name": "django", "port": 80, "server_names": ["pravoo.in"], "tls": True},
    },
}

# The runbook backs the database up by hand before migrations only; the repo adds a daily dump on
# a timer (the pre-migrate backup of a release stays). No separate disk on the VPS. Offsite is off
# until a bucket is chosen for this host (the sandbox turns it on against its S3 stand-in).
backups = {
    "local": {
        "unit": "chip-dashboard-backup",
        "script": "/usr/local/sbin/chip_dashboard_backup.sh",
        "schedule": "*-*-* 03:15:00",
        "mount": None,
        "root": "/var/backups/chip_dashboard",
        "keep_dump_days": 14,
        "group": "root",
    },
    "alerts": {},
}
