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

step "Python venv with moto and the OCSF validator"
ensure_venv

step "headless Chromium for the HTML report test"
ensure_chromium

gdo_install_cleanup

step "cargo fmt --check"
cargo fmt --all -- --check

step "hadolint Dockerfile"
"$GDO_VENV/bin/hadolint" Dockerfile

step "kubernetes-validate crds/ (Kubernetes 1.33 schemas, strict)"
"$GDO_VENV/bin/kubernetes-validate" --kubernetes-version 1.33.0 --strict crds/*.yaml

step "helm lint, helm template | kubernetes-validate, per chart value set (chart and its CRD)"
ensure_helm
chart=charts/guardduty-operator
# The chart renders the CRD from files/ (so that helm upgrade upgrades it): the
# same bytes as crds/, which `guardduty-operator crd` generates.
cmp -s crds/guardduty.security.dev_guarddutypolicies.yaml "$chart/files/guardduty.security.dev_guarddutypolicies.yaml" || {
    echo "the chart's CRD differs from crds/: cp crds/guardduty.security.dev_guarddutypolicies.yaml $chart/files/" >&2
    exit 1
}
gdo_temp_dir chart_out
# Each value set: its name (the expectations in $chart/ci/check_rendered.py),
# its values file (- for the defaults) and the API versions the cluster serves;
# the ServiceMonitor and PrometheusRule need monitoring.coreos.com/v1.
chart_value_sets=(
    "default - -"
    "everything $chart/ci/everything-values.yaml monitoring.coreos.com/v1"
    "no-monitoring-api $chart/ci/everything-values.yaml -"
    "openshift $chart/ci/openshift-values.yaml -"
    "all-namespaces $chart/ci/all-namespaces-values.yaml -"
)
for value_set in "${chart_value_sets[@]}"; do
    read -r set_name set_values set_apis <<<"$value_set"
    values_args=()
    [[ $set_values == - ]] || values_args=(-f "$set_values")
    api_args=()
    [[ $set_apis == - ]] || api_args=(--api-versions "$set_apis")
    "$GDO_HELM" lint --strict --quiet "$chart" "${values_args[@]}"
    "$GDO_HELM" template gdo "$chart" --namespace security "${values_args[@]}" "${api_args[@]}" \
        >"$chart_out/$set_name.yaml"
    # Writes every object but the Prometheus Operator's kinds (which it validates
    # against their CRDs' schemas itself) for kubernetes-validate.
    "$GDO_VENV/bin/python" "$chart/ci/check_rendered.py" "$set_name" "$chart_out/$set_name.yaml" \
        crds/guardduty.security.dev_guarddutypolicies.yaml "$chart_out/$set_name.builtin.yaml"
    "$GDO_VENV/bin/kubernetes-validate" --kubernetes-version 1.33.0 --strict --quiet \
        "$chart_out/$set_name.builtin.yaml"
done

step "checkov on the chart and the Dockerfile (skips explained in .checkov.yaml)"
ensure_checkov
PATH="$(dirname "$GDO_HELM"):$PATH" "$GDO_CHECKOV" --config-file .checkov.yaml \
    -d "$chart" --framework helm
# The helm framework renders the defaults only: the other value sets too, as
# rendered above. Not the openshift set: it leaves the user id to the SCC, which
# assigns a high one from the namespace's range (CKV_K8S_40 fails by design).
"$GDO_CHECKOV" --config-file .checkov.yaml --framework kubernetes \
    -f "$chart_out/everything.yaml" -f "$chart_out/all-namespaces.yaml"
"$GDO_CHECKOV" --config-file .checkov.yaml -f Dockerfile --framework dockerfile

step "start moto server"
start_moto
aws_env_for_emulators

step "cargo deny check (licences, advisories, sources; deny.toml)"
if command -v cargo-deny >/dev/null 2>&1; then
    # cargo-deny reads the metadata of every platform's crates (Windows' too): fetch
    # them first, from the registry, so that --offline finds them.
    cargo fetch --quiet
    if compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/crates" >/dev/null; then
        cargo deny --offline check
    else
        echo "no RustSec advisory database here (cargo deny fetch): licences, bans and sources only"
        cargo deny --offline check licenses bans sources
    fi
else
    echo "cargo-deny is not installed: skipped (cargo install --locked cargo-deny)"
fi

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
