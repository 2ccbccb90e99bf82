"""The host baseline engine (managed by this repo): what decides how the host runs or who gets in,
held against Debian's packages and this repository's declaration. The controller imports only
settings.py; the launcher /usr/local/lib/iac/iac_baseline.py runs cli.main."""
