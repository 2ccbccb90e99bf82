"""Make the sandbox's public host look like the real one today, built by hand per the runbook.

shared/runbooks/public-host-chip_dashboard.txt: a git clone at /root/Chips_dashboard, the
virtualenv `myenv` inside the project, SQLite in chip_dashboard/db.sqlite3 (with rows), the
unit broker_portal running gunicorn as root on 0.0.0.0:8001 (the runbook's appendix), nginx
site `django` proxying to it with a certbot certificate for pravoo.in. The converge must then
take this host over without losing a row.

Usage: python -m sandbox.legacy [--rows N]   (resets the public host first)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.world import World

RUNBOOK_UNIT = """[Unit]
Description=Gunicorn daemon for broker_portal Django app
After=network.target

[Service]
User=root
Group=root
Environment="PATH=/root/Chips_dashboard/chip_dashboard/myenv/bin"
Environment="DJANGO_SETTINGS_MODULE=broker_portal.settings"
Environment="USE_SQLITE=1"
Environment="DJANGO_SECRET_KEY=legacy-hand-made-key"
Environment="DJANGO_ALLOWED_HOSTS=pravoo.in,72.61.148.117"
Environment="DJANGO_CSRF_TRUSTED_ORIGINS=https://pravoo.in"
WorkingDirectory=/root/Chips_dashboard/chip_dashboard
ExecStart=/root/Chips_dashboard/chip_dashboard/myenv/bin/gunicorn broker_portal.wsgi:application \\
    --name broker_portal \\
    --bind 0.0.0.0:8001 \\
    --workers 3 \\
    --timeout 60
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

NGINX_SITE = """server {
    listen 80;
    server_name pravoo.in;
    location /.well-known/acme-challenge/ { root /var/www/html; }
    location / { return 301 https://$host$request_uri; }
}
server {
    listen 443 ssl;
    server_name pravoo.in;
    ssl_certificate /etc/letsencrypt/live/pravoo.in/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/pravoo.in/privkey.pem;
    location / {
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_pass http://127.0.0.1:8001;
    }
}
"""


def build(world: World, rows: int) -> None:
    def sh(cmd: str, **kw) -> str:
        return world.ssh("public", cmd, **kw).stdout

    sh("DEBIAN_FRONTEND=noninteractive apt-get -qq update && DEBIAN_FRONTEND=noninteractive "
       "apt-get -qq install -y git python3-venv nginx certbot sqlite3 curl >/dev/null")
    # the code: a clone of v1 with its .git, as `git pull` left it
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "Chips_dashboard"
        subprocess.run(["git", "clone", "-q", str(world.dir / "fixture-repos/chip_dashboard.git"), str(clone)],
                       check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-B", "main", "v1"], check=True)
        tar = subprocess.run(["tar", "-C", tmp, "-c", "Chips_dashboard"], check=True, capture_output=True).stdout
    subprocess.run(["ssh", "-F", str(world.ssh_config), f"{world.name}-public", "tar -C /root -x"],
                   input=tar, check=True)
    proj = "/root/Chips_dashboard/chip_dashboard"
    env = "USE_SQLITE=1 DJANGO_SECRET_KEY=legacy-hand-made-key DJANGO_ALLOWED_HOSTS=pravoo.in"
    sh(f"cd {proj} && python3 -m venv myenv && myenv/bin/pip install -q -r ../requirements.txt")
    sh(f"cd {proj} && {env} myenv/bin/python manage.py migrate --noinput -v0")
    sh(f"cd {proj} && {env} myenv/bin/python manage.py shell -c "
       f"\"from core.models import Chip; [Chip.objects.create(name=f'legacy-{{i}}') for i in range({rows})]\"")
    sh("install -m 644 /dev/stdin /etc/systemd/system/broker_portal.service", input=RUNBOOK_UNIT)
    sh("systemctl daemon-reload && systemctl enable --now broker_portal")
    # certificate as certbot made it (webroot through the default site), then the `django` site
    ca = world.acme_ca_file.read_text()
    sh("install -m 644 /dev/stdin /root/acme-ca.pem", input=ca)
    sh(f"REQUESTS_CA_BUNDLE=/root/acme-ca.pem certbot certonly -q --non-interactive --agree-tos "
       f"--email admin@pravoo.in --server {world.acme_directory} --webroot -w /var/www/html -d pravoo.in")
    sh("install -m 644 /dev/stdin /etc/nginx/sites-available/django && "
       "ln -sf /etc/nginx/sites-available/django /etc/nginx/sites-enabled/django && "
       "nginx -t -q && systemctl reload nginx", input=NGINX_SITE)
    count = sh(f"sqlite3 {proj}/db.sqlite3 'select count(*) from core_chip'").strip()
    print(f"[legacy] public host built as the runbook describes: {count} rows in {proj}/db.sqlite3",
          file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    world = World()
    world.reset_host("public")
    build(world, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
