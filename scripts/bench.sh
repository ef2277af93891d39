#!/usr/bin/env bash
#
# The benchmarks DESIGN.md asks the project to publish ("Measures the project must
# publish"), run against moto (EC2, SQS, STS) and the GuardDuty emulator on 127.0.0.1:
#
#     scripts/bench.sh                                  # every measure at its default size
#     scripts/bench.sh --only realtime,quiet            # some measures only
#     scripts/bench.sh --groups 100 --findings 1000     # smaller converge and ingest sizes
#     scripts/bench.sh --only realtime --events 10 --event-spacing-ms 0   # a burst of 10
#     scripts/bench.sh --only idle --idle-minutes 1     # a quick idle run
#     scripts/bench.sh --only members --member-accounts 2 --member-groups 20
#     GDO_BENCH_ONLY=idle GDO_BENCH_IDLE_MINUTES=1 scripts/bench.sh
#     GDO_BENCH_KEEP=1 scripts/bench.sh                 # keep the reports and watch logs
#
# Measures (--only takes a comma-separated list of their names; default: all):
#
#   converge  N security groups (--groups, GDO_BENCH_GROUPS, default 100,1000) open to
#             the world on tcp/22 (and on a harmless tcp/443), N/5 instances with 5
#             groups each, one port probe finding per instance; two `remediate` passes
#             of the release binary: the first converges (target: <= 2 mutating EC2
#             calls per group, describes at their batched minimum), the second must
#             change nothing.
#   ingest    N findings (--findings, GDO_BENCH_FINDINGS, default 1000,10000): one
#             `audit` pass with remediation.mode Off, so that only GuardDuty is read
#             (targets: GuardDuty calls within 5% of N/50 + N/50, peak RSS < 64 MiB).
#   realtime  Event to converged: one `watch --queue-url` (Enforce, interval 24h) over
#             E groups (--events, GDO_BENCH_EVENTS, default 100) open on tcp/22, an
#             instance each; one finding event per instance sent to the SQS queue, one
#             every --event-spacing-ms (GDO_BENCH_EVENT_SPACING_MS, default 200; 0 sends
#             them all at once). Latency: from SendMessage returning to the watch's JSON
#             line reporting the group's revoke; p50, p99, max (target: p99 <= 1 s on
#             loopback).
#   idle      The idle operator: `watch` (interval 1m, an empty queue) over F stored
#             findings of terminated instances (--idle-findings, GDO_BENCH_IDLE_FINDINGS,
#             default 1000) for M minutes (--idle-minutes, GDO_BENCH_IDLE_MINUTES, default
#             10): resident memory (VmRSS, VmHWM) and CPU seconds from /proc, passes run.
#             No target: the figures are published as measured.
#   quiet     A quiet periodic pass over N stored findings (--quiet-findings,
#             GDO_BENCH_QUIET_FINDINGS, default 10000): `watch` with interval 30s; its
#             second pass must make 1 ListFindings page and 0 GetFindings. Wall time of
#             both passes from the operator's log.
#   members   A member accounts x G groups (--member-accounts, --member-groups;
#             GDO_BENCH_MEMBER_ACCOUNTS, GDO_BENCH_MEMBER_GROUPS; default 10 x 100) made
#             through assumed roles, one finding per group; one `remediate` pass with
#             spec.memberAccounts. EC2 calls per group beside one account of G groups
#             laid out the same way (target: within 10%), and beside the converge
#             passes of the same run, when they ran.
#
# The default run takes about 20 minutes on two cores, 10 of them the idle measure.
# For every `remediate`/`audit` pass it prints the wall time, the operator's peak RSS
# (measured around the operator process alone: moto and the emulator run as their own
# processes) and the API calls per operation next to their minimum, then PASS/FAIL
# lines against the targets. The exit status is 1 when a target is missed, 2 on a
# usage error.
#
# Installs moto (once, in a cached venv), builds the release binaries, and stops
# every service it started however it ends (the `watch` measures stop their operator
# with SIGTERM, and kill it if the helper fails).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

usage() {
    # The header, up to the run time it states.
    sed -n '3,/^# The default run/{/^# The default run/!p;}' "$0" | sed 's/^# \{0,1\}//'
}

all_measures=converge,ingest,realtime,idle,quiet,members
only="${GDO_BENCH_ONLY:-$all_measures}"
groups_list="${GDO_BENCH_GROUPS:-100,1000}"
findings_list="${GDO_BENCH_FINDINGS:-1000,10000}"
events="${GDO_BENCH_EVENTS:-100}"
event_spacing_ms="${GDO_BENCH_EVENT_SPACING_MS:-200}"
idle_minutes="${GDO_BENCH_IDLE_MINUTES:-10}"
idle_findings="${GDO_BENCH_IDLE_FINDINGS:-1000}"
quiet_findings="${GDO_BENCH_QUIET_FINDINGS:-10000}"
member_accounts="${GDO_BENCH_MEMBER_ACCOUNTS:-10}"
member_groups="${GDO_BENCH_MEMBER_GROUPS:-100}"
while (($# > 0)); do
    case "$1" in
        --only | --groups | --findings | --events | --event-spacing-ms | --idle-minutes | \
            --idle-findings | --quiet-findings | --member-accounts | --member-groups)
            (($# >= 2)) || { usage >&2; exit 2; }
            case "$1" in
                --only) only="$2" ;;
                --groups) groups_list="$2" ;;
                --findings) findings_list="$2" ;;
                --events) events="$2" ;;
                --event-spacing-ms) event_spacing_ms="$2" ;;
                --idle-minutes) idle_minutes="$2" ;;
                --idle-findings) idle_findings="$2" ;;
                --quiet-findings) quiet_findings="$2" ;;
                --member-accounts) member_accounts="$2" ;;
                --member-groups) member_groups="$2" ;;
            esac
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

# --only: every name must be a measure.
for measure in ${only//,/ }; do
    if [[ ",$all_measures," != *",$measure,"* ]]; then
        printf 'bench.sh: unknown measure %q (measures: %s)\n' "$measure" "$all_measures" >&2
        exit 2
    fi
done
selected() {
    [[ ",${only// /,}," == *",$1,"* ]]
}

# whole_number NAME VALUE MIN MAX: VALUE must be a whole number from MIN to MAX.
whole_number() {
    if [[ ! "$2" =~ ^[0-9]{1,6}$ ]] || ((10#$2 < $3 || 10#$2 > $4)); then
        printf 'bench.sh: %s must be a whole number from %s to %s, got %q\n' "$1" "$3" "$4" "$2" >&2
        exit 2
    fi
}
whole_number --events "$events" 1 100000
whole_number --event-spacing-ms "$event_spacing_ms" 0 600000
whole_number --idle-minutes "$idle_minutes" 1 1440
whole_number --idle-findings "$idle_findings" 1 999999
whole_number --quiet-findings "$quiet_findings" 1 999999
whole_number --member-accounts "$member_accounts" 1 100
whole_number --member-groups "$member_groups" 1 10000

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

# policy FILE REGION DETECTOR MODE [EXTRA]: EXTRA is YAML indented under spec:.
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
${5:-}
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

if ! selected converge; then
    group_sizes=()
fi
if ! selected ingest; then
    finding_sizes=()
fi
# The converge sizes that ran, for the member accounts' comparison.
converged_sizes=()

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
    converged_sizes+=("$groups")
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

# The watch measures and the member accounts each have a region of their own, apart
# from the converge regions above.
if selected realtime; then
    region=us-east-2
    heading "Event to converged: $events finding events through SQS (region $region)"
    gdo_log "event to converged: seeding $events groups, then one event each"
    "$bench_bin" realtime --operator "$operator_bin" --region "$region" \
        --emulator "$GDO_GUARDDUTY_URL" --events "$events" \
        --spacing-ms "$event_spacing_ms" --work "$work" || failed=1
fi

if selected idle; then
    region=eu-north-1
    detector="$(detector_id i "$idle_findings")"
    heading "Idle operator: watch for $idle_minutes min over $idle_findings findings (region $region)"
    gdo_log "posting $idle_findings findings for the idle watch"
    "$bench_bin" seed-findings --emulator "$GDO_GUARDDUTY_URL" --detector "$detector" \
        --count "$idle_findings" --region "$region" >/dev/null
    gdo_log "watching for $idle_minutes min"
    "$bench_bin" idle --operator "$operator_bin" --region "$region" \
        --detector "$detector" --minutes "$idle_minutes" --work "$work" || failed=1
fi

if selected quiet; then
    region=ap-south-1
    detector="$(detector_id q "$quiet_findings")"
    heading "Quiet periodic pass over $quiet_findings stored findings (region $region)"
    gdo_log "posting $quiet_findings findings for the quiet pass"
    seeded="$("$bench_bin" seed-findings --emulator "$GDO_GUARDDUTY_URL" \
        --detector "$detector" --count "$quiet_findings" --region "$region")"
    printf '  posted %s port probe findings of nonexistent instances, not updated since, in %.1f s\n' \
        "$(json_field findings <<<"$seeded")" "$(json_field seconds <<<"$seeded")"
    gdo_log "watch with interval 30s: two passes"
    "$bench_bin" quiet --operator "$operator_bin" --region "$region" \
        --detector "$detector" --count "$quiet_findings" --work "$work" || failed=1
fi

if selected members; then
    region=eu-west-3
    baseline_region=ap-northeast-2
    total=$((member_accounts * member_groups))
    heading "Member accounts: $member_accounts accounts x $member_groups groups (region $region)"

    # One account of as many groups, laid out the same way: the baseline.
    detector="$(detector_id b "$member_groups")"
    gdo_log "seeding the single-account baseline: $member_groups groups in $baseline_region"
    "$bench_bin" seed-groups --region "$baseline_region" --groups "$member_groups" \
        --groups-per-instance 1 --ports 22 --emulator "$GDO_GUARDDUTY_URL" \
        --detector "$detector" >/dev/null
    policy="$work/members-baseline.yaml"
    write_policy "$policy" "$baseline_region" "$detector" Enforce
    gdo_log "remediate pass over the baseline"
    measure "$work/members-baseline.json" "$work/members-baseline.metrics" \
        "$operator_bin" remediate --policy "$policy" -o json

    detector="$(detector_id m "$total")"
    gdo_log "seeding $member_accounts member accounts through their roles"
    seeded="$("$bench_bin" seed-members --region "$region" --accounts "$member_accounts" \
        --groups "$member_groups" --role guardduty-operator-member --external-id gdo-bench \
        --emulator "$GDO_GUARDDUTY_URL" --detector "$detector")"
    printf '  seeded %s groups open to the world on tcp/22 in %s member accounts through their roles,\n' \
        "$(json_field groups <<<"$seeded")" "$member_accounts"
    printf '  an instance and a finding each, in %.1f s; the single-account baseline likewise (%s groups)\n' \
        "$(json_field seconds <<<"$seeded")" "$member_groups"
    policy="$work/members.yaml"
    write_policy "$policy" "$region" "$detector" Enforce "  memberAccounts:
    roleName: guardduty-operator-member
    externalId: gdo-bench"
    gdo_log "remediate pass over the member accounts"
    measure "$work/members.json" "$work/members.metrics" \
        "$operator_bin" remediate --policy "$policy" -o json
    converge_args=()
    for groups in "${converged_sizes[@]}"; do
        converge_args+=(--converge "$groups" "$work/converge-$groups-1.json"
            "$work/converge-$groups-1.metrics")
    done
    "$bench_bin" members-report --accounts "$member_accounts" --groups "$member_groups" \
        --members "$work/members.json" "$work/members.metrics" \
        --baseline "$work/members-baseline.json" "$work/members-baseline.metrics" \
        "${converge_args[@]}" || failed=1
fi

printf '\nbenchmark finished in %d s: %s\n' "$((SECONDS - script_started))" \
    "$(if ((failed)); then echo 'some targets missed (FAIL above)'; else echo 'every target met'; fi)"
exit "$failed"
