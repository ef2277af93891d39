#!/usr/bin/env bash
#
# The demo: one emulated AWS account (EC2 on moto, GuardDuty on the project's
# emulator, both on 127.0.0.1), three instances, two findings, and a local
# stand-in for a Slack webhook (scripts/demo_receiver.py); then
#   audit                 -> the findings and the plan, nothing changes; the
#                            HIGH finding is alerted to Slack (fix planned)
#   remediate (Enforce)   -> the plan applied, the outcome of every step; the
#                            alert's update (remediated)
#   remediate again       -> nothing left to change, nothing alerted
# with the security group rules shown before and after. Everything it starts
# is stopped, and its temporary files removed, when it ends.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

banner() {
    printf '\n\033[1m== %s\033[0m\n' "$*"
}

# Print, under a banner, what the Slack receiver printed since the last call.
received_lines=1
show_received() {
    local total
    total="$(wc -l <"$GDO_SLACK_RECEIVER_LOG")"
    if ((total > received_lines)); then
        banner "$1"
        tail -n "+$((received_lines + 1))" "$GDO_SLACK_RECEIVER_LOG"
    else
        banner "$2"
    fi
    received_lines=$total
}

cargo_env
ensure_venv
gdo_install_cleanup

banner "Building guardduty-operator and the GuardDuty emulator"
cargo build --bin guardduty-operator -p guardduty-operator -p guardduty-emulator >&2
bin="$CARGO_TARGET_DIR/debug"

start_moto
start_emulator "$bin/guardduty-emulator"
start_slack_receiver
aws_env_for_emulators
# Progress logs stay quiet for the demo; -v on a command brings them back.
export RUST_LOG="${RUST_LOG:-warn}"

banner "Seeding the account: web (SSH open to the world, probed), win (all TCP open, RDP brute-forced), app (clean)"
mapfile -t groups < <("$GDO_VENV/bin/python" scripts/demo_seed.py)
policy=examples/demo-policy.yaml

# The policy's secops-chat channel reads its webhook URL from the Secret slack,
# key webhookUrl: here a file, laid out like a mounted Secret. --state keeps the
# alert record between the runs, so each alert goes out once per change.
tmp=""
gdo_temp_dir tmp
mkdir -p "$tmp/secrets/slack"
printf '%s/services/T000/B000/DEMO\n' "$GDO_SLACK_RECEIVER_URL" >"$tmp/secrets/slack/webhookUrl"
alerting=(--state "$tmp/alerts.json" --secrets-dir "$tmp/secrets")

banner "Security group rules before"
"$GDO_VENV/bin/python" scripts/demo_rules.py "${groups[@]}"

banner "guardduty-operator audit --notify --policy $policy ${alerting[*]}"
"$bin/guardduty-operator" audit --notify --policy "$policy" "${alerting[@]}"
show_received "Alert received by the local Slack receiver" \
    "No alert received by the local Slack receiver"

banner "guardduty-operator remediate --policy $policy ${alerting[*]}   (mode: Enforce)"
"$bin/guardduty-operator" remediate --policy "$policy" "${alerting[@]}"
show_received "Update received by the local Slack receiver" \
    "No alert received by the local Slack receiver"

banner "guardduty-operator remediate --policy $policy ${alerting[*]}   (again)"
"$bin/guardduty-operator" remediate --policy "$policy" "${alerting[@]}"
show_received "Alert received by the local Slack receiver (unexpected: nothing changed)" \
    "No alert this time: nothing changed"

banner "Security group rules after"
"$GDO_VENV/bin/python" scripts/demo_rules.py "${groups[@]}"

# The evidence for an auditor: a read-only pass (nothing changed, nothing sent), with
# the change record the runs above kept in the state file. It outlives the demo.
report="${GDO_DEMO_REPORT:-$(gdo_cache_dir)/demo-report.html}"
mkdir -p "$(dirname "$report")"
banner "guardduty-operator report --policy $policy --state $tmp/alerts.json --output html --output-file $report"
"$bin/guardduty-operator" report --policy "$policy" --state "$tmp/alerts.json" \
    --output html --output-file "$report"

banner "Done: SSH and RDP reach only the trusted ranges; every other port kept its access"
printf 'The compliance report of this account: %s\n  (open it in a browser: file://%s)\n' "$report" "$report"
