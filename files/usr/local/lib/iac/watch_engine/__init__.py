"""iac-watch: what an operator must hear about before users do (watch_engine/cli.py)."""
