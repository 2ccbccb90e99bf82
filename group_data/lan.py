# Managed by this repo. The LAN server gts-server, runbook:
# shared/runbooks/lan-host-gts-server.txt. Types, defaults and meaning: docs/options.md.

# The hosts of this group: inventory name (= /etc/hostname) -> the values that differ on that host,
# merged over this file's (one host today, so its values are the group's).
hosts = {
    "gts-server": {},
}

# What an operator must confirm on the server before the first production run: option -> how.
# `make preflight` fails while this stack still has the value declared here; once confirmed (and
# corrected below if it differed), remove the entry. The runbook's repository lines came through
# an e-mail client ("git@github.com mailto:git@github.com:..."), so the remotes are read back.
confirm = {
    "backups.local.disk_uuid": "blkid of the WD Red's partition (lsblk -f)",
    "apps.rental_scheduler.source.url": "git -C /srv/apps/rental_scheduler remote get-url origin",
    "apps.shop_scheduler.source.url": "git -C /srv/apps/shop_scheduler remote get-url origin",
}

host = {
    "aliases": ["gts-server.lan"],
    # the release gts-server runs; moving it to 13 is `make upgrade HOST=lan` (README: upgrading)
    "debian": 12,
}

admin = {
    # "Primary access: tailscale ssh gts@gts-server"; the postgres group reads the dump disk
    "name": "gts",
    "groups": ["postgres"],
}

network = {
    "interface": "eno1",
    "address": "192.168.1.230/24",
    "gateway": "192.168.1.1",
    "dns": ["192.168.1.1"],
    "search": ["lan"],
}

tailscale = {"enabled": True}

# "Primary access: tailscale ssh gts@gts-server": Tailscale's own SSH, on tailscale0, is not
# OpenSSH and is not filtered; OpenSSH (22) takes keys only, 8001/8002 serve the apps.
firewall = {"trusted_interfaces": ["tailscale0"]}

node = {"source": "nodesource", "major": 20}

app_env_dir = "/etc/gts/apps"
apps_group = "gtsapps"

postgres = {
    "roles": ["rental_scheduler_user", "shop_scheduler_user"],
    "databases": {
        "gts_scheduler": "rental_scheduler_user",
        "gingerich_trailer_rentals": "postgres",
        "gts_shop_scheduler": "shop_scheduler_user",
        "gingerich_trailer": "postgres",
    },
}

apps = {
    "rental_scheduler": {
        "user": "rental_scheduler",
        "source": {"url": "git@github.com:RockSolid-Data/gts-rental-scheduler.git", "revision": "main"},
        "settings_module": "rental_scheduler.settings",
        "wsgi_app": "rental_scheduler.wsgi:application",
        "unit": "gunicorn-rental_scheduler",
        "allowed_hosts": ["gts-server.lan", "gts-server", "192.168.1.230", "127.0.0.1", "localhost"],
        "database": {"engine": "postgresql", "name": "gts_scheduler", "role": "rental_scheduler_user"},
        "extra_databases": {
            "accounting": {"engine": "postgresql", "name": "gingerich_trailer_rentals",
                           "role": "rental_scheduler_user"},
        },
        "discord_alerts": {"enabled": True, "dedup_seconds": 300, "timeout_seconds": 2, "environment": "prod"},
        # the runbook: rebuild "if CSS/templates/tailwind config changed"
        "frontend_build": {"inputs": ["build.mjs", "frontend", "scheduler/templates"],
                           "outputs": ["scheduler/static/scheduler/dist"]},
        "log_dir": "/var/log/gts/rental_scheduler",
        "nginx": {"name": "rental_scheduler", "port": 8001, "server_names": ["gts-server.lan", "_"]},
    },
    "shop_scheduler": {
        "user": "shop_scheduler",
        "source": {"url": "git@github.com:stephenrocksolid/gts-shop-scheduler.git", "revision": "main"},
        "settings_module": "shop_scheduler.settings",
        "wsgi_app": "shop_scheduler.wsgi:application",
        "unit": "gunicorn-shop_scheduler",
        "allowed_hosts": ["gts-server.lan", "gts-server", "192.168.1.230", "127.0.0.1", "localhost"],
        "database": {"engine": "postgresql", "name": "gts_shop_scheduler", "role": "shop_scheduler_user"},
        "frontend_build": {"inputs": ["build.mjs", "frontend", "shop/templates"],
                           "outputs": ["shop/static/shop/dist"]},
        "log_dir": "/var/log/gts/shop_scheduler",
        "nginx": {"name": "shop_scheduler", "port": 8002, "server_names": ["gts-server.lan", "_"]},
    },
}

# Runbook "Backups (implemented)" and "System-state backups": the runbook's names and paths (the
# dump disk /mnt/pg_backups, pg-backup-gts, /etc/gts/backup); schedules and retention are the
# model's defaults (operations/backups/options.py). Passwords and keys come from the secrets file.
backups = {
    "local": {
        "unit": "pg-backup-gts",
        "script": "/usr/local/sbin/pg_backup_gts_databases.sh",
        "mount": "/mnt/pg_backups",
        "root": "/mnt/pg_backups/postgres",
        # to confirm on the server (see `confirm` above); until set, the fstab line is left as it
        # is and only the mount is checked
        "disk_uuid": None,
    },
    "offsite": {
        "postgres": {
            "repository": "s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres",
            "env_file": "/etc/gts/backup/restic.env",
        },
        "system_state": {
            "repository": "s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/system-state",
            "env_file": "/etc/gts/backup/restic-system-state.env",
            "lists_dir": "/etc/gts/backup/system-state",
            "inventory_dir": "/etc/gts/bootstrap",
            "includes": ["/etc/gts", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root", "/etc/fstab",
                         "/usr/local/sbin", "/etc/gts/bootstrap"],
            "excludes": ["/mnt/pg_backups", "/var/lib/postgresql", "/var/log", "/tmp", "/var/cache", "/root/.cache",
                         "/home/*/.cache", "/srv/apps", "/srv/venvs", "**/.venv", "**/venv"],
        },
    },
    "alerts": {},
}
