"""The watch: certificates, disks and backups checked on a timer, each condition told once."""
