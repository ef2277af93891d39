#!/usr/bin/env bash
#
# The demo: one emulated AWS account (EC2 on moto, GuardDuty on the project's
# emulator, both on 127.0.0.1), three instances, two findings; then
#   audit                 -> the findings and the plan, nothing changes
#   remediate (Enforce)   -> the plan applied, the outcome of every step
#   remediate again       -> nothing left to change
# with the security group rules shown before and after. Everything it starts
# is stopped when it ends.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

banner() {
    printf '\n\033[1m== %s\033[0m\n' "$*"
}

cargo_env
ensure_venv
gdo_install_cleanup

banner "Building guardduty-operator and the GuardDuty emulator"
cargo build --bin guardduty-operator -p guardduty-operator -p guardduty-emulator >&2
bin="$CARGO_TARGET_DIR/debug"

start_moto
start_emulator "$bin/guardduty-emulator"
aws_env_for_emulators
# Progress logs stay quiet for the demo; -v on a command brings them back.
export RUST_LOG="${RUST_LOG:-warn}"

banner "Seeding the account: web (SSH open to the world, probed), win (all TCP open, RDP brute-forced), app (clean)"
mapfile -t groups < <("$GDO_VENV/bin/python" scripts/demo_seed.py)
policy=examples/demo-policy.yaml

banner "Security group rules before"
"$GDO_VENV/bin/python" scripts/demo_rules.py "${groups[@]}"

banner "guardduty-operator audit --policy $policy"
"$bin/guardduty-operator" audit --policy "$policy"

banner "guardduty-operator remediate --policy $policy   (mode: Enforce)"
"$bin/guardduty-operator" remediate --policy "$policy"

banner "guardduty-operator remediate --policy $policy   (again)"
"$bin/guardduty-operator" remediate --policy "$policy"

banner "Security group rules after"
"$GDO_VENV/bin/python" scripts/demo_rules.py "${groups[@]}"

banner "Done: SSH and RDP reach only the trusted ranges; every other port kept its access"
