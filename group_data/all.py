# Managed by this repo. Values for every host; types, defaults and meaning: docs/options.md.
# Values only: no logic, no secrets (secrets come from the secrets file, see docs/secrets.md).

base = {
    "extra_packages": [],
}
