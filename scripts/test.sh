#!/usr/bin/env bash
#
# The project's one test command, and what CI runs:
#
#     scripts/test.sh             # fmt check, clippy, every test
#     scripts/test.sh planner     # extra args go to `cargo test`
#
# It installs moto (once, in a cached venv), starts a moto server for the
# integration tests (they read GDO_MOTO_URL; the GuardDuty emulator runs
# in-process), and stops it again however the run ends. The exit status is
# that of the first step that fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Announce a step on stderr.
step() {
    printf '==> %s\n' "$*" >&2
}

step "load scripts/lib.sh"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step "cargo environment"
cargo_env

step "Python venv with moto"
ensure_venv

gdo_install_cleanup

step "cargo fmt --check"
cargo fmt --all -- --check

step "hadolint Dockerfile"
"$GDO_VENV/bin/hadolint" Dockerfile

step "kubernetes-validate crds/ (Kubernetes 1.33 schemas, strict)"
"$GDO_VENV/bin/kubernetes-validate" --kubernetes-version 1.33.0 --strict crds/*.yaml

step "helm lint, helm template | kubernetes-validate (chart and its CRD)"
ensure_helm
chart=charts/guardduty-operator
cmp -s crds/guardduty.security.dev_guarddutypolicies.yaml "$chart/crds/guardduty.security.dev_guarddutypolicies.yaml" || {
    echo "the chart's CRD differs from crds/: cp crds/*.yaml $chart/crds/" >&2
    exit 1
}
"$GDO_HELM" lint --strict "$chart"
rendered="$(mktemp)"
for values in "" "--set networkPolicy.enabled=true --set serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::123456789012:role/gdo"; do
    # shellcheck disable=SC2086 # the values are meant to split into arguments
    "$GDO_HELM" template gdo "$chart" --namespace security --include-crds $values >"$rendered"
    "$GDO_VENV/bin/kubernetes-validate" --kubernetes-version 1.33.0 --strict --quiet "$rendered"
done
rm -f "$rendered"

step "checkov on the chart and the Dockerfile (skips explained in .checkov.yaml)"
ensure_checkov
PATH="$(dirname "$GDO_HELM"):$PATH" "$GDO_CHECKOV" --config-file .checkov.yaml \
    -d "$chart" --framework helm
"$GDO_CHECKOV" --config-file .checkov.yaml -f Dockerfile --framework dockerfile

step "start moto server"
start_moto
aws_env_for_emulators

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test${*:+ $*}"
# Bounded, so a hung test fails the run instead of eating CI's time.
test_log="$(gdo_log_dir)/cargo-test-$$.log"
set +e
timeout --signal=INT --kill-after=30s "${GDO_TEST_TIMEOUT:-40m}" cargo test --workspace "$@" 2>&1 | tee "$test_log"
test_status=${PIPESTATUS[0]}
set -e
# The closing line, over every test binary: "tests: 212 passed, 0 failed, 0 skipped".
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$test_log"
rm -f "$test_log"
[[ $test_status -eq 0 ]] || step "cargo test failed (exit $test_status)"
exit "$test_status"
