"""What the host engines share (managed by this repo: files/usr/local/lib/iac/engine_common/):
alerts to the operator's webhook, locks, root's records and safe paths, env files. Standard
library only: the engines run with ``python3 -I -S``."""
