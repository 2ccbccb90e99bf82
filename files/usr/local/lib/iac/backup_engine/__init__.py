"""The backup engine (managed by this repo). The controller imports only settings.py; the
launcher /usr/local/lib/iac/iac_backup.py runs cli.main."""
