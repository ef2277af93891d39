#!/usr/bin/env bash
#
# The benchmarks DESIGN.md asks the project to publish ("Measures the project must
# publish"), run against moto (EC2) and the GuardDuty emulator on 127.0.0.1:
#
#     scripts/bench.sh                                  # 100 and 1000 groups, 1000 and 10000 findings
#     scripts/bench.sh --groups 100 --findings 1000     # smaller sizes
#     scripts/bench.sh --groups 100,1000 --findings none
#     GDO_BENCH_GROUPS=100 GDO_BENCH_FINDINGS=1000 scripts/bench.sh
#     GDO_BENCH_KEEP=1 scripts/bench.sh                 # keep the operator's JSON reports
#
# 1. Converging N security groups: N groups open to the world on tcp/22 (and on a
#    harmless tcp/443), N/5 instances with 5 groups each, one port probe finding per
#    instance; two `remediate` passes of the release binary, the first converges,
#    the second must change nothing.
# 2. Ingesting N findings: one `audit` pass with remediation.mode Off, so that only
#    GuardDuty is read.
#
# For every pass it prints the wall time, the operator's peak RSS (measured around
# the operator process alone: moto and the emulator run as their own processes) and
# the API calls per operation next to their minimum, then PASS/FAIL lines against
# the targets. The exit status is 1 when a target is missed, 2 on a usage error.
#
# Installs moto (once, in a cached venv), builds the release binaries, and stops
# every service it started however it ends.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

usage() {
    sed -n '3,10p' "$0" | sed 's/^# \{0,1\}//'
}

groups_list="${GDO_BENCH_GROUPS:-100,1000}"
findings_list="${GDO_BENCH_FINDINGS:-1000,10000}"
while (($# > 0)); do
    case "$1" in
        --groups)
            (($# >= 2)) || { usage >&2; exit 2; }
            groups_list="$2"
            shift 2
            ;;
        --findings)
            (($# >= 2)) || { usage >&2; exit 2; }
            findings_list="$2"
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'bench.sh: unknown argument %s\n' "$1" >&2
            usage >&2
            exit 2
            ;;
    esac
done

# "100,1000" or "100 1000" -> an array; "none" or "" -> empty.
parse_sizes() {
    local list=$1 name=$2 size
    local -n sizes_out=$3
    sizes_out=()
    [[ "$list" == none ]] && return 0
    for size in ${list//,/ }; do
        if [[ ! "$size" =~ ^[1-9][0-9]{0,5}$ ]]; then
            printf 'bench.sh: %s sizes must be whole numbers from 1 to 999999, got %q\n' \
                "$name" "$size" >&2
            exit 2
        fi
        sizes_out+=("$size")
    done
}
group_sizes=()
finding_sizes=()
parse_sizes "$groups_list" groups group_sizes
parse_sizes "$findings_list" findings finding_sizes

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

script_started=$SECONDS

cargo_env
ensure_venv

work="$(mktemp -d "${TMPDIR:-/tmp}/gdo-bench-XXXXXX")"
gdo_install_cleanup
if [[ -n "${GDO_BENCH_KEEP:-}" ]]; then
    gdo_log "keeping the policies and the operator's reports in $work"
else
    # Also remove the work files (policies, reports) when the script ends.
    trap 'gdo_cleanup; rm -rf "$work"' EXIT
fi

gdo_log "building the release binaries and the bench helper"
cargo build --release --quiet -p guardduty-operator -p guardduty-emulator \
    --bin guardduty-operator --bin guardduty-emulator --example bench >&2
operator_bin="$CARGO_TARGET_DIR/release/guardduty-operator"
emulator_bin="$CARGO_TARGET_DIR/release/guardduty-emulator"
bench_bin="$CARGO_TARGET_DIR/release/examples/bench"

start_moto
start_emulator "$emulator_bin"
aws_env_for_emulators
# moto filters security group rules in Python over every rule of the region: with
# 1000 groups one describe takes seconds and the queue of them can pass the
# operator's 60 s per request. The bench measures calls and the operator's own
# work, not moto's speed, so give moto time.
export GDO_AWS_ATTEMPT_TIMEOUT_SECONDS=600
# The operator paces EC2 calls at EC2's own token-bucket rates (mutating: 50 at once,
# then 5 a second): on real AWS that bucket, not the operator, bounds how fast 1000
# groups converge (about 400 s). moto has no such limit, and the bench measures the
# operator's own cost, so the buckets are opened wide here.
export GDO_EC2_MUTATING_BURST=10000 GDO_EC2_MUTATING_PER_SECOND=10000
export GDO_EC2_DESCRIBE_BURST=10000 GDO_EC2_DESCRIBE_PER_SECOND=10000

# Runs a command with stdout to $1 and writes $2: {"rc", "wall" (s), "cpu" (s, user
# + system), "maxrss_kib"}.
# The peak RSS is that of the command's process alone (RUSAGE_CHILDREN of a
# wrapper that runs nothing else).
measure() {
    local out=$1 metrics=$2
    shift 2
    python3 -c '
import json, resource, subprocess, sys, time
out, metrics, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as stdout:
    start = time.monotonic()
    rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=stdout).returncode
    wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(metrics, "w") as f:
    json.dump({"rc": rc, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
               "maxrss_kib": usage.ru_maxrss}, f)  # KiB on Linux
' "$out" "$metrics" "$@"
}

# policy FILE REGION DETECTOR MODE
write_policy() {
    cat >"$1" <<EOF
apiVersion: guardduty.security.dev/v1alpha1
kind: GuardDutyPolicy
metadata:
  name: bench
spec:
  region: $2
  detectorId: $3
  trustedCidrs: [10.0.0.0/8, 2001:db8::/32]
  remediation:
    mode: $4
EOF
}

# A 32-hex-digit detector id per benchmark and size, so that no pass reads
# another's findings.
detector_id() {
    printf '%s%031x' "$1" "$2"
}

# Moto keeps regions apart: one per converge size.
regions=(us-west-1 us-west-2 eu-west-1 eu-west-2 eu-central-1 ap-southeast-1
    ap-southeast-2 ap-northeast-1 sa-east-1 ca-central-1)

# json_field NAME <<<'{"NAME": ...}': prints that member of a one-line JSON object.
json_field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

failed=0
heading() {
    printf '\n== %s ==\n' "$*"
}

printf 'guardduty-operator benchmarks (%s, %s cores, moto %s, release build)\n' \
    "$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo unknown)" \
    "$(nproc)" "$GDO_MOTO_VERSION"

index=0
for groups in "${group_sizes[@]}"; do
    if ((index >= ${#regions[@]})); then
        gdo_log "more converge sizes than regions: skipping $groups groups"
        break
    fi
    region="${regions[index]}"
    index=$((index + 1))
    detector="$(detector_id c "$groups")"
    heading "Converging $groups security groups (region $region)"
    gdo_log "seeding $groups groups in $region"
    seeded="$("$bench_bin" seed-groups --region "$region" --groups "$groups" \
        --emulator "$GDO_GUARDDUTY_URL" --detector "$detector")"
    instances="$(json_field instances <<<"$seeded")"
    printf '  seeded %s groups (tcp/22 and tcp/443 from 0.0.0.0/0), %s instances with up to 5 groups each,\n' \
        "$groups" "$instances"
    printf '  %s port probe findings (tcp/22) in %.1f s\n' \
        "$(json_field findings <<<"$seeded")" "$(json_field seconds <<<"$seeded")"

    policy="$work/converge-$groups.yaml"
    write_policy "$policy" "$region" "$detector" Enforce
    for pass in 1 2; do
        gdo_log "remediate pass $pass over $groups groups"
        measure "$work/converge-$groups-$pass.json" "$work/converge-$groups-$pass.metrics" \
            "$operator_bin" remediate --policy "$policy" -o json
    done
    "$bench_bin" converge-report --groups "$groups" --instances "$instances" \
        --first "$work/converge-$groups-1.json" "$work/converge-$groups-1.metrics" \
        --second "$work/converge-$groups-2.json" "$work/converge-$groups-2.metrics" ||
        failed=1
done

for count in "${finding_sizes[@]}"; do
    detector="$(detector_id f "$count")"
    heading "Ingesting $count findings"
    gdo_log "posting $count findings"
    seeded="$("$bench_bin" seed-findings --emulator "$GDO_GUARDDUTY_URL" \
        --detector "$detector" --count "$count")"
    printf '  posted %s port probe findings of nonexistent instances, severities 1.0 to 9.5, in %.1f s\n' \
        "$(json_field findings <<<"$seeded")" "$(json_field seconds <<<"$seeded")"
    policy="$work/ingest-$count.yaml"
    write_policy "$policy" us-east-1 "$detector" Off
    gdo_log "audit pass over $count findings"
    measure "$work/ingest-$count.json" "$work/ingest-$count.metrics" \
        "$operator_bin" audit --policy "$policy" -o json
    # The same pass printing a table: what the JSON rendering itself costs.
    measure "$work/ingest-$count.txt" "$work/ingest-$count-table.metrics" \
        "$operator_bin" audit --policy "$policy" -o table
    "$bench_bin" ingest-report --count "$count" \
        --report "$work/ingest-$count.json" --metrics "$work/ingest-$count.metrics" \
        --table-metrics "$work/ingest-$count-table.metrics" ||
        failed=1
done

heading "Not measured yet"
cat <<'EOF'
  "Event to converged" (from a finding event in the queue to the security group
  fixed) and "Idle operator" (resident memory and CPU) belong to the controller and
  the SQS event intake, which are not built yet.
EOF

printf '\nbenchmark finished in %d s: %s\n' "$((SECONDS - script_started))" \
    "$(if ((failed)); then echo 'some targets missed (FAIL above)'; else echo 'every target met'; fi)"
exit "$failed"
