#!/usr/bin/env bash
# The steady state side by side with Cloud Custodian, as a long-running operator
# runs it: ../shared/bench-peers times one-shot `remediate` passes, which remember
# nothing between runs; this runs `guardduty-operator watch` (interval 30s) on the
# peer benchmark's seed (N groups, an instance and a port-probe finding each) for
# three passes (converges, reads the converged state in full, quiet), then Custodian
# once on the same converged moto state, and prints each pass's wall time, EC2
# calls and moto CPU. A benchmark: it prints figures and checks the end state; it
# asserts no time.
#
#   scripts/bench-peers-watch.sh [N]        # default 1000; needs the release binaries
#
# Uses ../shared/bench-peers (its setup.sh venvs, seed.py, gdo_findings.py,
# moto_counted.py, verify.py, custodian-policy.yml) and changes nothing there.
set -euo pipefail

N=${1:-1000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${GDO_BENCH_PEERS:-$HERE/../shared/bench-peers}
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
GDO_BIN=${GDO_BIN:-$TARGET/release/guardduty-operator}
GDO_EMULATOR=${GDO_EMULATOR:-$TARGET/release/guardduty-emulator}
[[ -d "$PEERS" ]] || { echo "no peer benchmark at $PEERS (set GDO_BENCH_PEERS)" >&2; exit 2; }
[[ -x "$GDO_BIN" && -x "$GDO_EMULATOR" ]] || {
    echo "build the release binaries first: cargo build --release --workspace --bins" >&2
    exit 2
}
[[ "$N" -ge 1 && "$N" -le 5000 ]] || { echo "N must be 1..5000" >&2; exit 2; }

VENVS=$("$PEERS/setup.sh" | tail -1)
PY=$VENVS/moto/bin/python
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n "${GDO_BENCH_KEEP:-}" ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

: >"$WORK/aws-config"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-config
unset AWS_PROFILE AWS_ENDPOINT_URL_EC2 AWS_ENDPOINT_URL_STS || true
# EC2's buckets opened wide, as scripts/bench.sh does: the operator, not AWS's limits.
export GDO_EC2_MUTATING_BURST=10000 GDO_EC2_MUTATING_PER_SECOND=10000
export GDO_EC2_DESCRIBE_BURST=10000 GDO_EC2_DESCRIBE_PER_SECOND=10000
export GDO_AWS_ATTEMPT_TIMEOUT_SECONDS=600

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
await_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
moto_cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$MOTO_PID/stat"; }

port=$(free_port)
"$PY" "$PEERS/moto_counted.py" --host 127.0.0.1 --port "$port" --calls-log "$WORK/calls.tsv" 2>"$WORK/moto.log" &
MOTO_PID=$!
PIDS+=("$MOTO_PID")
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
await_port "$port"
echo "seeding $N groups and instances (untimed)" >&2
"$PY" "$PEERS/seed.py" "$N" --instances 2>"$WORK/seed.log"
"$PY" "$PEERS/gdo_findings.py" "$WORK/findings.json" 2>>"$WORK/seed.log"
eport=$(free_port)
"$GDO_EMULATOR" --listen "127.0.0.1:$eport" --findings "$WORK/findings.json" >"$WORK/emulator.log" 2>&1 &
PIDS+=("$!")
export AWS_ENDPOINT_URL_GUARDDUTY=http://127.0.0.1:$eport
await_port "$eport"

sed 's/^spec:$/spec:\n  interval: 30s/' "$PEERS/gdo-policy.yaml" >"$WORK/policy.yaml"
grep -q 'interval: 30s' "$WORK/policy.yaml" || { echo "could not set the interval" >&2; exit 1; }

echo "watch: three passes, 30 s apart" >&2
cpu0=$(moto_cpu)
"$GDO_BIN" --log-format json watch --output json --policy "$WORK/policy.yaml" \
    --state "$WORK/state.json" >"$WORK/watch.out" 2>"$WORK/watch.log" &
WATCH_PID=$!
PIDS+=("$WATCH_PID")
cpus=()
for pass in 1 2 3; do
    for ((i = 0; i < 1200; i++)); do
        [[ $(wc -l <"$WORK/watch.out") -ge $pass ]] && break
        kill -0 "$WATCH_PID" 2>/dev/null || { echo "watch exited early" >&2; tail -5 "$WORK/watch.log" >&2; exit 1; }
        sleep 0.5
    done
    [[ $(wc -l <"$WORK/watch.out") -ge $pass ]] || { echo "pass $pass did not finish in 10 minutes" >&2; exit 1; }
    cpus+=("$(moto_cpu)")
done
kill -TERM "$WATCH_PID"
wait "$WATCH_PID" 2>/dev/null || true
rss=$(grep -o '"peak_rss_kib":[0-9]*' "$WORK/watch.log" | tail -1 | cut -d: -f2 || true)
"$PY" "$PEERS/verify.py" "$N" >"$WORK/verify-gdo.json" && gdo_ok=true || gdo_ok=false

echo "custodian: one pass over the same converged state" >&2
c0=$(moto_cpu)
t0=$(date +%s.%N)
/usr/bin/time -v -o "$WORK/c7n-time.txt" "$VENVS/c7n/bin/custodian" run -s "$WORK/c7n-out" \
    --region us-east-1 -f "$WORK/c7n.cache" --cache-period 0 "$PEERS/custodian-policy.yml" \
    >"$WORK/c7n.out" 2>"$WORK/c7n.err"
t1=$(date +%s.%N)
c1=$(moto_cpu)
"$PY" "$PEERS/verify.py" "$N" >"$WORK/verify-c7n.json" && c7n_ok=true || c7n_ok=false

"$PY" - "$WORK" "$N" "$cpu0" "${cpus[@]}" "$c0" "$c1" "$t0" "$t1" "$gdo_ok" "$c7n_ok" <<'EOF'
import json, sys, datetime
work, n, cpu0, p1, p2, p3, c0, c1, t0, t1, gdo_ok, c7n_ok = sys.argv[1:]
reports = [json.loads(l) for l in open(f"{work}/watch.out") if l.strip()][:3]
times, start = [], None
for line in open(f"{work}/watch.log"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    message = event.get("fields", {}).get("message", event.get("message"))
    at = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    if message == "starting a pass":
        start = at
    elif message == "pass finished" and start is not None:
        times.append((at - start).total_seconds())
        start = None
cpus = [float(p1) - float(cpu0), float(p2) - float(p1), float(p3) - float(p2)]
rss = None
for line in open(f"{work}/c7n-time.txt"):
    if "Maximum resident set size" in line:
        rss = int(line.split(":")[-1]) // 1024
c7n_wall = float(t1) - float(t0)
rows = []
names = ["converges", "converged, read in full", "quiet"]
for i, report in enumerate(reports):
    calls = report.get("apiCalls", {})
    describes = sum(v for k, v in calls.items() if k.startswith("EC2.Describe"))
    mutating = sum(v for k, v in calls.items() if k.startswith("EC2.") and not k.startswith("EC2.Describe"))
    rows.append((f"gdo watch pass {i + 1} ({names[i]})", times[i] if i < len(times) else None,
                 cpus[i], describes, mutating, len(report.get("quiet", []))))
rows.append(("custodian (converged state)", c7n_wall, float(c1) - float(c0), None, None, None))
print(f"\nN={n}: guardduty-operator watch beside Cloud Custodian on one moto\n")
print(f"{'pass':42s} {'wall':>8s} {'moto CPU':>9s} {'describes':>10s} {'mutating':>9s} {'quiet':>6s}")
for name, wall, cpu, d, m, q in rows:
    cell = lambda v, f: "-" if v is None else format(v, f)
    print(f"{name:42s} {cell(wall, '7.2f')}s {cell(cpu, '8.2f')}s {cell(d, '10d')} {cell(m, '9d')} {cell(q, '6d')}")
quiet_wall = rows[2][1]
if quiet_wall is not None:
    print(f"\nquiet pass / Custodian converged: {quiet_wall / c7n_wall:.2f}x (goal <= 0.5)")
print(f"end state correct: gdo {gdo_ok}, custodian {c7n_ok}; custodian peak RSS {rss} MiB")
for i, report in enumerate(reports):
    print(f"pass {i + 1} calls:", json.dumps(report.get("apiCalls", {}), sort_keys=True))
EOF

# Moto's own cost of the tags the operator writes (the watch tag on each group it
# converged, the owner tag on each rule it added, as DESIGN.md puts them): moto
# looks up a resource's tags by scanning every tag it holds, so each describe of
# the converged state costs it more than the same describe of the untagged seed.
# Timed with boto3 on the same moto, with the tags and then without (last: it
# changes the state).
echo "moto: the converged state's describes with the operator's tags, then without" >&2
"$PY" - <<'EOF'
import time
import boto3

ec2 = boto3.client("ec2")

def timed(op, key):
    start, n = time.monotonic(), 0
    for page in ec2.get_paginator(op).paginate(PaginationConfig={"PageSize": 1000}):
        items = page[key]
        n += sum(len(r["Instances"]) for r in items) if key == "Reservations" else len(items)
    return time.monotonic() - start, n

reads = [("describe_security_groups", "SecurityGroups"),
         ("describe_security_group_rules", "SecurityGroupRules"),
         ("describe_instances", "Reservations")]
tags = [t for p in ec2.get_paginator("describe_tags").paginate() for t in p["Tags"]]
ours = [t for t in tags if t["Key"].startswith("guardduty-operator/")]
before = {op: timed(op, key) for op, key in reads}
by_key = {}
for t in ours:
    by_key.setdefault(t["Key"], []).append(t["ResourceId"])
for key, ids in by_key.items():
    for i in range(0, len(ids), 200):
        ec2.delete_tags(Resources=ids[i:i + 200], Tags=[{"Key": key}])
after = {op: timed(op, key) for op, key in reads}
print(f"\nmoto's describes of the converged state: with the operator's {len(ours)} tags "
      f"(of {len(tags)}), then without them")
print(f"{'describe (boto3, one page of 1000)':36s} {'objects':>8s} {'tagged':>8s} {'untagged':>9s}")
for op, _ in reads:
    print(f"{op:36s} {before[op][1]:8d} {before[op][0]:7.2f}s {after[op][0]:8.2f}s")
print(f"{'sum':36s} {'':8s} {sum(v[0] for v in before.values()):7.2f}s "
      f"{sum(v[0] for v in after.values()):8.2f}s")
EOF
