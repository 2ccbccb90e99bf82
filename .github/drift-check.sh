#!/usr/bin/env bash
# Managed by this repo. The drift job's check (.github/workflows/drift.yml), the same commands
# wherever it runs: tests/integration/test_drift.py runs this step against the sandbox.
#   make drift FORMAT=markdown  -> the job summary ($GITHUB_STEP_SUMMARY), the JSON report beside it
#   exit 0 in sync; 2 drift: one message to the Discord webhook ($DRIFT_WEBHOOK_URL); 1 the check
#   could not tell (unreachable host or git remote, invalid configuration): the job fails.
# GNU make exits 2 for any failed recipe, so the verdict is read from the JSON report, which the
# drift command writes in every case (an error included).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
inventory="${INVENTORY:?INVENTORY: the inventory to check, e.g. inventory.py}"
summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
report="${DRIFT_JSON:-drift.json}"

rm -f "$report"
make -s drift INVENTORY="$inventory" FORMAT=markdown JSON_OUT="$report" >> "$summary"
code=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["exit_code"])' "$report" \
       2>/dev/null || echo 1)
case "$code" in
    0) echo "drift: in sync" ;;
    2) echo "drift: DRIFT (see the job summary)" >&2
       .venv/bin/python -m cli.drift_notify "$report" || echo "drift: the webhook message was not posted" >&2 ;;
    *) code=1
       echo "drift: ERROR: the check could not tell (the reason is above and in the job summary)" >&2 ;;
esac
exit "$code"
