"""The release engine (managed by this repo). The controller imports only settings.py; the
launcher /usr/local/lib/iac/iac_release.py runs cli.main."""
