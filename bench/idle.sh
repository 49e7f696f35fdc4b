#!/usr/bin/env bash
# bench/idle.sh -- what corral's arbiter costs when nothing happens, and how fast a worker boots.
#
# Starts bin/corral with WORKERS workers on a free 127.0.0.1 port, waits until they all serve, then
# samples the arbiter's CPU time and RSS over IDLE_SECONDS. Prints one TSV row:
#   workers  arbiter_rss_kb  arbiter_idle_cpu_pct  worker_rss_kb_avg  spawn_ms_avg  spawn_ms_max
# spawn_ms is exec to "ready" (the worker accepts), from the arbiter's debug log.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-4}
IDLE_SECONDS=${IDLE_SECONDS:-20}
BIN=${BIN:-bin/corral}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/corral
log=$(mktemp /tmp/corral-idle.XXXXXX.log)
"$BIN" -w "$WORKERS" -b 127.0.0.1:0 --log-level debug demo >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
	grep -q "Ready: $WORKERS workers serving" "$log" && break
	sleep 0.1
done
grep -q "Ready: $WORKERS workers serving" "$log" || { cat "$log" >&2; echo "corral did not become ready" >&2; exit 1; }
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
t0=$(ticks $pid)
sleep "$IDLE_SECONDS"
t1=$(ticks $pid)
cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$IDLE_SECONDS" 'BEGIN {printf "%.3f", 100 * d / hz / s}')
workers=$(cat /proc/$pid/task/*/children)
wrss=0
n=0
for w in $workers; do wrss=$((wrss + $(rss "$w"))); n=$((n + 1)); done
spawn=$(grep -o 'ready in [0-9.]*ms' "$log" | awk '{v = $3 + 0; s += v; if (v > m) m = v} END {printf "%.1f\t%.1f", s / NR, m}')
printf 'workers\tarbiter_rss_kb\tarbiter_idle_cpu_pct\tworker_rss_kb_avg\tspawn_ms_avg\tspawn_ms_max\n'
printf '%s\t%s\t%s\t%s\t%s\n' "$WORKERS" "$(rss $pid)" "$cpu" "$((wrss / n))" "$spawn"
