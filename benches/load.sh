#!/usr/bin/env bash
# Load benchmark: export-file GETs against `cellucid serve` and against nginx
# serving the same export folder, with wrk at 1, 8 and 64 connections.
#
#   bash benches/load.sh
#
# Environment (all optional):
#   BENCH_DURATION     wrk duration per run                (default 10s)
#   BENCH_CONNECTIONS  connection counts                   (default "1 8 64")
#   BENCH_THREADS      wrk threads (capped at connections) (default 2)
#   BENCH_EXPORTS      export folder, relative to the repo (default testdata/exports-0.9.4)
#   BENCH_CELLUCID_PORT / BENCH_NGINX_PORT                 (default 28765 / 28766)
#   BENCH_NO_BUILD=1   skip `cargo build --release` (use the existing binary)
#   BENCH_LARGE_MIB=4  serve a temp copy of the folder with an extra 4 MiB binary
#                      file (becomes the "binary" and "range64k" file)
#   BENCH_NICE=-10     run both servers and wrk at this nice level (needs root
#                      for < 0): less noise from other work on a shared machine
#
# Only 127.0.0.1 is ever contacted. Both servers are stopped on exit (trap),
# every wrk run is wrapped in `timeout`, and the default run takes ~3.5 min
# plus the release build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root: all paths below are relative to it

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-"1 8 64"}
THREADS=${BENCH_THREADS:-2}
EXPORTS_REL=${BENCH_EXPORTS:-testdata/exports-0.9.4}
PORT1=${BENCH_CELLUCID_PORT:-28765}
PORT2=${BENCH_NGINX_PORT:-28766}
HOST=127.0.0.1
BIN=target/release/cellucid
NICE=()
[[ -n ${BENCH_NICE:-} ]] && NICE=(nice -n "$BENCH_NICE")

log() { printf '[load.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wrk's duration ("10s", "1m") in whole seconds.
duration_secs() {
    local d=$1
    case $d in
        *m) echo $(( ${d%m} * 60 )) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}
DUR_SECS=$(duration_secs "$DURATION")
[[ $DUR_SECS =~ ^[0-9]+$ && $DUR_SECS -ge 1 ]] || die "BENCH_DURATION must be like 10s or 1m (got $DURATION)"

# ---------------------------------------------------------------- tools ----
install_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} with apt-get"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    # Keep the Debian nginx package from starting its system service (port 80):
    # a policy-rc.d that denies service starts, only if none is there already.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # `apt-get update` only when the package lists do not know the packages.
    local pkg
    for pkg in "${missing[@]}"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            "${sudo[@]}" apt-get update -qq
            break
        fi
    done
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if ((made_policy)); then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
}
install_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- build ----
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p cellucid-cli"
    cargo build --release -p cellucid-cli >&2
fi
[[ -x $BIN ]] || die "$BIN not found (build failed?)"

[[ -d $EXPORTS_REL ]] || die "export folder $EXPORTS_REL not found"
EXPORTS=$(cd "$EXPORTS_REL" && pwd)

# ------------------------------------------------------- temp dir, traps ----
TMP=$(mktemp -d /tmp/cellucid-load.XXXXXX)
CELLUCID_PID=""
NGINX_PID=""

stop_pid() { # pid name
    local pid=$1 name=$2 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) did not stop in 5 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$CELLUCID_PID" cellucid
    # nginx: TERM to the master stops its workers too.
    stop_pid "$NGINX_PID" nginx
    if [[ $rc -ne 0 && -d $TMP ]]; then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n ${BENCH_LARGE_MIB:-} ]]; then
    # Opt-in: serve a temp copy of the folder with one extra N MiB file, so the
    # large-file and 64 KiB Range paths are measured on a file worth mapping.
    [[ $BENCH_LARGE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_LARGE_MIB must be a whole number of MiB"
    log "copying $EXPORTS to $TMP/exports with a $BENCH_LARGE_MIB MiB pbmc68k-f32/var/bench-large.bin"
    cp -r "$EXPORTS" "$TMP/exports"
    chmod -R u+w "$TMP/exports"
    head -c $(( BENCH_LARGE_MIB * 1024 * 1024 )) /dev/urandom >"$TMP/exports/pbmc68k-f32/var/bench-large.bin"
    EXPORTS_REL=$TMP/exports
    EXPORTS=$TMP/exports
fi

# ---------------------------------------------------------- pick files ----
# Files inside dataset folders (what both servers serve under /<dataset>/...).
MANIFEST=pbmc68k-f32/obs_manifest.json
[[ -f $EXPORTS/$MANIFEST ]] || die "$EXPORTS/$MANIFEST not found"
# Largest non-JSON file one or more folders deep, ties broken by name.
LARGEST=$(cd "$EXPORTS" && find . -mindepth 2 -type f ! -name '.*' ! -name '*.json' -printf '%s %P\n' \
    | sort -k1,1nr -k2,2 | awk 'NR == 1 { sub(/^[0-9]+ /, ""); print }')
[[ -n $LARGEST ]] || die "no binary file in $EXPORTS"
LARGEST_SIZE=$(stat -c %s "$EXPORTS/$LARGEST")
# Largest file of any kind >= 64 KiB for the Range read, if there is one.
RANGE_FILE=$(cd "$EXPORTS" && find . -mindepth 2 -type f ! -name '.*' -size +65535c -printf '%s %P\n' \
    | sort -k1,1nr -k2,2 | awk 'NR == 1 { sub(/^[0-9]+ /, ""); print }')
RANGE_NOTE=""
if [[ -z $RANGE_FILE ]]; then
    RANGE_FILE=$LARGEST
    RANGE_NOTE="no served file is >= 64 KiB; the Range read bytes=0-65535 goes to the largest binary file ($LARGEST_SIZE B) and returns 206 with the whole file"
    log "note: $RANGE_NOTE"
fi
RANGE_SIZE=$(stat -c %s "$EXPORTS/$RANGE_FILE")
RANGE_LEN=$(( RANGE_SIZE < 65536 ? RANGE_SIZE : 65536 ))

# -------------------------------------------------------------- servers ----
port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
port_free "$PORT1" || die "port $PORT1 is in use (set BENCH_CELLUCID_PORT)"
port_free "$PORT2" || die "port $PORT2 is in use (set BENCH_NGINX_PORT)"

wait_http() { # url name pid
    local i
    for i in $(seq 1 100); do
        kill -0 "$3" 2>/dev/null || die "$2 exited at startup (see $TMP)"
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 did not answer $1 within 10 s"
}

log "starting cellucid on $HOST:$PORT1"
"${NICE[@]}" "$BIN" serve "$EXPORTS_REL" --no-browser --no-web-ui --quiet --port "$PORT1" \
    >"$TMP/cellucid.out" 2>"$TMP/cellucid.err" &
CELLUCID_PID=$!
wait_http "http://$HOST:$PORT1/_cellucid/health" cellucid "$CELLUCID_PID"

mkdir -p "$TMP/nginx"
USER_LINE=""
[[ $(id -u) -eq 0 ]] && USER_LINE="user root root;"  # workers may read any folder root can
cat >"$TMP/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # nginx closes a keep-alive connection after 1000 requests by default;
    # cellucid never does, so lift the cap to compare serving, not reconnects.
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    types { application/json json; }
    default_type application/octet-stream;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen $HOST:$PORT2;
        root $EXPORTS;
        location / { }
    }
}
EOF
log "starting nginx on $HOST:$PORT2 (config $TMP/nginx/nginx.conf)"
"${NICE[@]}" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!
wait_http "http://$HOST:$PORT2/$MANIFEST" nginx "$NGINX_PID"

# ------------------------------------------------------ correctness check ----
sha() { sha256sum | cut -d' ' -f1; }
check_same() { # path [range]
    local path=$1 range=${2:-} args=(-fsS --max-time 5) want a b
    [[ -n $range ]] && args+=(-H "Range: bytes=$range")
    if [[ -n $range ]]; then
        want=$(head -c "$RANGE_LEN" "$EXPORTS/$path" | sha)
    else
        want=$(sha <"$EXPORTS/$path")
    fi
    a=$(curl "${args[@]}" "http://$HOST:$PORT1/$path" | sha)
    b=$(curl "${args[@]}" "http://$HOST:$PORT2/$path" | sha)
    [[ $a == "$want" ]] || die "cellucid served wrong bytes for /$path ${range:+(Range $range)}"
    [[ $b == "$want" ]] || die "nginx served wrong bytes for /$path ${range:+(Range $range)}"
    log "sha256 ok on both servers: /$path ${range:+Range $range }$want"
}
check_same "$MANIFEST"
check_same "$LARGEST"
check_same "$RANGE_FILE" 0-65535
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Range: bytes=0-65535' "http://$HOST:$PORT1/$RANGE_FILE")
[[ $code == 206 ]] || die "cellucid answered $code, not 206, to the Range read"

# ------------------------------------------------------------------ load ----
cat >"$TMP/range.lua" <<'EOF'
wrk.headers["Range"] = "bytes=0-65535"
EOF

# CPU ticks (user+system) used so far by a pid and, for nginx, its workers.
cpu_ticks() {
    local total=0 pid f
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        # Fields after the ")" of comm: utime is 14th, stime 15th overall.
        f=$(sed 's/^.*) //' "/proc/$pid/stat")
        set -- $f
        total=$(( total + ${12} + ${13} ))
    done
    echo "$total"
}
nginx_pids() {
    echo "$NGINX_PID"
    cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || pgrep -P "$NGINX_PID" || true
}
HZ=$(getconf CLK_TCK)

# Busy ticks of the whole machine (user+nice+system+irq+softirq+steal).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# CPU ticks of this shell's waited-for children (cutime + cstime): wrk's.
children_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{print $14 + $15}'; }

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
PEAK_THREADS=0
run_wrk() { # server port label path conns [lua]
    local server=$1 port=$2 label=$3 path=$4 conns=$5 lua=${6:-} threads out
    threads=$(( THREADS < conns ? THREADS : conns ))
    local args=(-t"$threads" -c"$conns" -d"$DURATION" --latency --timeout 5s)
    [[ -n $lua ]] && args+=(-s "$lua")
    local pids file="$TMP/wrk-$server-$label-$conns.txt"
    if [[ $server == cellucid ]]; then pids=$CELLUCID_PID; else pids=$(nginx_pids | tr '\n' ' '); fi
    local s0 m0 w0 s1 m1 w1 wpid n
    # shellcheck disable=SC2086
    s0=$(cpu_ticks $pids); m0=$(machine_ticks); w0=$(children_ticks)
    "${NICE[@]}" timeout $(( DUR_SECS + 20 )) wrk "${args[@]}" "http://$HOST:$port/$path" >"$file" 2>&1 &
    wpid=$!
    # Thread count of cellucid in the middle of the run (the blocking pool
    # shrinks again after 10 s idle, so the end of the benchmark is too late).
    sleep "$(( DUR_SECS / 2 ))"
    if [[ $server == cellucid ]]; then
        n=$(awk '/^Threads:/ {print $2}' "/proc/$CELLUCID_PID/status" 2>/dev/null || echo 0)
        if (( n > PEAK_THREADS )); then PEAK_THREADS=$n; fi
    fi
    wait "$wpid" || die "wrk failed against $server /$path -c$conns: $(cat "$file")"
    # shellcheck disable=SC2086
    s1=$(cpu_ticks $pids); m1=$(machine_ticks); w1=$(children_ticks)
    out=$(cat "$file")
    local rps p99 reqs non2xx errs cpu us other
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    errs=$(awk '/Socket errors:/ {sub(/^ *Socket errors: */, ""); print}' <<<"$out")
    # Server CPU as % of one core over the run, and per request (in us).
    cpu=$(awk -v t=$(( s1 - s0 )) -v hz="$HZ" -v d="$DUR_SECS" 'BEGIN {printf "%.0f", 100 * t / hz / d}')
    us=$(awk -v t=$(( s1 - s0 )) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.1f", (r > 0) ? 1e6 * t / hz / r : 0}')
    # CPU used by everything but this server and wrk (other builds, tests):
    # a sign of contention, in % of one core.
    other=$(awk -v t=$(( (m1 - m0) - (s1 - s0) - (w1 - w0) )) -v hz="$HZ" -v d="$DUR_SECS" \
        'BEGIN {v = 100 * t / hz / d; printf "%.0f", (v < 0) ? 0 : v}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$label" "$conns" "$rps" "$p99" "$cpu" "$us" \
        "$other" "${non2xx:-0}" "${errs:-none}" >>"$RESULTS"
    log "$(printf '%-8s %-9s c=%-3s %12s req/s  p99 %-9s CPU %4s%% (%s us/req)  other load %s%%%s%s' \
        "$server" "$label" "$conns" "$rps" "$p99" "$cpu" "$us" "$other" \
        "${non2xx:+  NON-2xx $non2xx}" "${errs:+  socket errors: $errs}")"
}

# Other work on the machine skews the figures: note it.
busy() { echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg); rustc/cargo processes: $(pgrep -c -x 'rustc|cargo' || true)"; }
BUSY_BEFORE=$(busy)
START=$(date +%s)
log "warm-up (2 s each)"
timeout 30 wrk -t1 -c8 -d2s "http://$HOST:$PORT1/$MANIFEST" >/dev/null
timeout 30 wrk -t1 -c8 -d2s "http://$HOST:$PORT2/$MANIFEST" >/dev/null

for spec in "manifest|$MANIFEST|" "binary|$LARGEST|" "range64k|$RANGE_FILE|$TMP/range.lua"; do
    IFS='|' read -r label path lua <<<"$spec"
    for conns in $CONNECTIONS; do
        run_wrk cellucid "$PORT1" "$label" "$path" "$conns" "$lua"
        run_wrk nginx "$PORT2" "$label" "$path" "$conns" "$lua"
    done
done

# Peak RSS (VmHWM) while still running.
hwm() { awk '/^VmHWM:/ {print $2 " " $3}' "/proc/$1/status" 2>/dev/null || echo "n/a"; }
CELLUCID_HWM=$(hwm "$CELLUCID_PID")
NGINX_HWM=""
for p in $(nginx_pids); do NGINX_HWM+="${NGINX_HWM:+, }$(hwm "$p")"; done
ELAPSED=$(( $(date +%s) - START ))
BUSY_AFTER=$(busy)

# ---------------------------------------------------------------- report ----
echo
echo "## Results ($(date -u +%Y-%m-%dT%H:%M:%SZ), wrk -d$DURATION, threads=min($THREADS, connections)${BENCH_NICE:+, nice $BENCH_NICE})"
echo
echo "Files (under $EXPORTS_REL):"
echo "- manifest: /$MANIFEST ($(stat -c %s "$EXPORTS/$MANIFEST") B)"
echo "- binary: /$LARGEST ($LARGEST_SIZE B, the largest non-JSON file)"
echo "- range64k: /$RANGE_FILE with Range: bytes=0-65535 ($RANGE_LEN B returned)"
[[ -n $RANGE_NOTE ]] && echo "- note: $RANGE_NOTE"
echo
echo "| server | file | connections | req/s | p99 latency | server CPU (% of 1 core) | server CPU per request | other load (% of 1 core) | non-2xx | socket errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
while IFS=$'\t' read -r server label conns rps p99 cpu us other non2xx errs; do
    echo "| $server | $label | $conns | $rps | $p99 | $cpu | $us us | $other | $non2xx | $errs |"
done <"$RESULTS"
echo
echo "| file | connections | cellucid req/s | nginx req/s | cellucid/nginx | target >= 0.667 (within 1.5x) | CPU per request, cellucid/nginx |"
echo "|---|---:|---:|---:|---:|---|---:|"
for label in manifest binary range64k; do
    for conns in $CONNECTIONS; do
        c=$(awk -F'\t' -v l="$label" -v n="$conns" '$1=="cellucid" && $2==l && $3==n {print $4}' "$RESULTS")
        n=$(awk -F'\t' -v l="$label" -v n="$conns" '$1=="nginx" && $2==l && $3==n {print $4}' "$RESULTS")
        cu=$(awk -F'\t' -v l="$label" -v n="$conns" '$1=="cellucid" && $2==l && $3==n {print $7}' "$RESULTS")
        nu=$(awk -F'\t' -v l="$label" -v n="$conns" '$1=="nginx" && $2==l && $3==n {print $7}' "$RESULTS")
        awk -v l="$label" -v k="$conns" -v c="$c" -v n="$n" -v cu="$cu" -v nu="$nu" 'BEGIN {
            r = (n > 0) ? c / n : 0
            u = (nu > 0) ? sprintf("%.1fx", cu / nu) : "n/a"
            printf "| %s | %s | %s | %s | %.2f | %s | %s |\n", l, k, c, n, r, (r >= 1 / 1.5) ? "met" : "MISSED", u
        }'
    done
done
echo
echo "- cellucid peak RSS (VmHWM): $CELLUCID_HWM; threads seen mid-run: up to $PEAK_THREADS"
echo "- nginx peak RSS (VmHWM, master then workers): $NGINX_HWM"
echo "- load phase took ${ELAPSED}s"
echo "- machine load before: $BUSY_BEFORE; after: $BUSY_AFTER"
