# Managed by this repo (files/usr/local/lib/iac/gunicorn_conf.py). Every app's gunicorn reads it
# (`--config`, the unit's ExecStart). It holds the settings only some gunicorn versions know: gunicorn
# ignores a name it does not know in a config file, where an unknown command-line option stops it
# (an app that pins gunicorn 23 would never start with `--no-control-socket`).

# gunicorn >= 25 opens a control socket for `gunicornc`; the unit's sandbox lets the app write only
# its state and log directories, and nothing here uses it
control_socket_disable = True
