#!/usr/bin/env bash
# HTTP/2 vs HTTP/1.1 over TLS for the byte viewer's hot path: many parallel
# Range reads of one AnnData file through `/_cellucid/anndata/…`, measured
# with h2load (Debian's nghttp2-client) against `cellucid serve --tls-cert`.
#
#   bash benches/h2.sh
#
# Each configuration sends the same number of requests with the same Range
# header to the same file, over TLS:
#   h2   1 connection,  M streams at once  (what a browser does with HTTP/2)
#   h1   6 connections, 1 request each     (a browser's HTTP/1.1 per-host cap)
#   h1   M connections, 1 request each     (HTTP/1.1 at the same concurrency)
#
# Environment (all optional):
#   BENCH_REQUESTS   requests per run                    (default 20000)
#   BENCH_STREAMS    concurrent requests M               (default 32)
#   BENCH_RANGES     Range sizes in KiB                  (default "16 256")
#   BENCH_REPEATS    runs per cell; the median is kept   (default 3)
#   BENCH_PORT       server port                         (default 28443)
#   BENCH_FILE       AnnData file, relative to the repo  (default testdata/anndata/pbmc68k_reduced.h5ad)
#   BENCH_NO_BUILD=1 skip `cargo build --release`
#
# Only 127.0.0.1 is contacted. The server is stopped on exit (trap); every
# h2load run is wrapped in `timeout`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root

REQUESTS=${BENCH_REQUESTS:-20000}
STREAMS=${BENCH_STREAMS:-32}
RANGES=${BENCH_RANGES:-"16 256"}
REPEATS=${BENCH_REPEATS:-3}
PORT=${BENCH_PORT:-28443}
FILE=${BENCH_FILE:-testdata/anndata/pbmc68k_reduced.h5ad}
BIN=target/release/cellucid

log() { printf '[h2.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v h2load >/dev/null || die "h2load is not installed (apt-get install nghttp2-client)"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
command -v curl >/dev/null || die "curl is not installed (apt-get install curl)"
[[ -f $FILE ]] || die "$FILE: no such file"

if [[ -z ${BENCH_NO_BUILD:-} ]]; then
    log "building cellucid (release)"
    cargo build --release --locked -p cellucid-cli >&2
fi
[[ -x $BIN ]] || die "$BIN is missing (build it or unset BENCH_NO_BUILD)"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# A self-signed certificate for 127.0.0.1, as SECURITY.md describes.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

"$BIN" serve --no-browser --no-web-ui --quiet --host 127.0.0.1 --port "$PORT" \
    --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --cache-dir "$WORK/cache" "$FILE" 2>"$WORK/server.log" &
SERVER_PID=$!
BASE=https://127.0.0.1:$PORT
for _ in $(seq 100); do
    curl -fsS --cacert "$WORK/cert.pem" "$BASE/_cellucid/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server did not start: $(cat "$WORK/server.log")"
    sleep 0.1
done
# Where byte viewers read the file (docs/PROTOCOL.md, the byte route).
URL=$BASE/$(curl -fsS --cacert "$WORK/cert.pem" "$BASE/_cellucid/datasets" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["datasets"][0]["anndata"]["file"]["url"])')
SIZE=$(stat -c %s "$FILE")
log "reading $URL ($SIZE bytes)"
curl -fsS --http2 --cacert "$WORK/cert.pem" -o /dev/null -r 0-0 -w '%{http_version}' "$URL" |
    grep -qx 2 || die "the server did not negotiate HTTP/2"

# One h2load run; prints "req/s mean max 2xx-count".
run() {
    local out
    out=$(timeout 300 h2load "$@" 2>&1) || die "h2load $*: $out"
    awk '
        /^finished in/ { gsub(",", "", $4); rps = $4 }
        /^status codes:/ { ok = $3 }
        /^time for request:/ { mean = $6; max = $5 }
        END { print rps, mean, max, ok }
    ' <<<"$out"
}

# Median of the first field over the runs, with the other fields of that run.
median() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }

printf '| range | protocol | connections | concurrent requests | req/s | MiB/s | mean latency | max latency |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for kib in $RANGES; do
    len=$((kib * 1024))
    ((len <= SIZE)) || die "range of $kib KiB is larger than the file"
    start=$(( (SIZE - len) / 2 ))
    range="range: bytes=$start-$((start + len - 1))"
    for cfg in "h2 1 $STREAMS" "h1 6 1" "h1 $STREAMS 1"; do
        read -r proto conns streams <<<"$cfg"
        args=(-n "$REQUESTS" -c "$conns" -m "$streams" -t 1 -H "$range" "$URL")
        [[ $proto == h1 ]] && args=(--h1 "${args[@]}")
        results=$(for _ in $(seq "$REPEATS"); do run "${args[@]}"; done | median)
        read -r rps mean max ok <<<"$results"
        [[ $ok == "$REQUESTS" ]] || die "$proto: only $ok of $REQUESTS requests got a 2xx"
        mibs=$(awk -v r="$rps" -v l="$len" 'BEGIN { printf "%.0f", r * l / 1048576 }')
        printf '| %s KiB | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$kib" "$proto" "$conns" "$((conns * streams))" "$rps" "$mibs" "$mean" "$max"
    done
done
