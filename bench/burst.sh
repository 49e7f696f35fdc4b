#!/usr/bin/env bash
# bench/burst.sh -- a bursty load against a fixed herd and an autoscaled one.
#
# Usage:
#   bash bench/burst.sh > burst.tsv
#   BURST_MAX=4 BURST_SECONDS=10 bash bench/burst.sh
#
# For each of "fixed" (-w MAX) and "scaled" (-w 1:MAX --scale-down-delay BURST_DELAY), sync
# workers of the demo app on a free port of 127.0.0.1: idle for BURST_IDLE seconds, then wrk
# -c BURST_CONNS of GET /work?ms=20 for BURST_SECONDS, then idle again; the workers alive are
# counted every 100 ms throughout. The goal of -w MIN:MAX: a p99 within 20% of fixed MAX's at
# half its worker-seconds or less.
#
# stdout: a header, then one TSV row per mode:
#   name  workers  p99_ms  rps  errors  worker_seconds
#
# Environment (defaults): BURST_MAX (4) BURST_CONNS (64) BURST_SECONDS (10) BURST_IDLE (10)
#   BURST_DELAY (5), plus those of lib.sh.

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAX=${BURST_MAX:-4}
CONNS=${BURST_CONNS:-64}
BURST=${BURST_SECONDS:-10}
IDLE=${BURST_IDLE:-10}
DELAY=${BURST_DELAY:-5}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}

trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# count_workers SECONDS: the worker-seconds of SERVER_PID's children over that long, sampled
# every 100 ms (printed with one decimal).
count_workers() {
	local samples=$(($1 * 10)) sum=0 i
	nap_open
	for ((i = 0; i < samples; i++)); do
		child_pids "$SERVER_PID"
		sum=$((sum + ${#CHILD_PIDS[@]}))
		nap 0.1
	done
	nap_close
	calc "$sum / 10" 1
}

need wrk curl setsid timeout awk
log "bursts of wrk -c$CONNS -d${BURST}s /work?ms=20 between ${IDLE}s idle: -w $MAX and -w 1:$MAX; logs: $LOG_DIR"
printf 'name\tworkers\tp99_ms\trps\terrors\tworker_seconds\n'
for name in fixed scaled; do
	port=$(free_port) || die "no free port"
	workers=$MAX
	[[ $name == scaled ]] && workers=1:$MAX
	start_server "burst-$name" "$CORRAL" -w "$workers" --scale-down-delay "$DELAY" -k sync -b "$HOST:$port" --log-level warning demo
	wait_ready "$port" || die "$name: corral did not answer on port $port"
	count_workers $((IDLE + BURST + 5 + IDLE)) >"$LOG_DIR/burst-$name.ws" &
	counter=$!
	sleep "$IDLE"
	cmd=(timeout --foreground -k 5 $((BURST + 15)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${BURST}s" --timeout "${WRK_TIMEOUT}s"
		-s "$BENCH_DIR/wrk_report.lua" "http://$HOST:$port/work?ms=20")
	[[ -n $WRK_CPUS ]] && cmd=(taskset -c "$WRK_CPUS" "${cmd[@]}")
	"${cmd[@]}" >"$LOG_DIR/burst-$name.wrk" 2>&1
	wait "$counter"
	stop_server
	if parse_wrk "$LOG_DIR/burst-$name.wrk"; then
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$workers" "$(calc "$W_p99_us / 1000" 1)" \
			"$(calc "$W_requests / ($W_duration_us / 1e6)" 0)" $((W_connect + W_read + W_write + W_timeout + W_status)) \
			"$(cat "$LOG_DIR/burst-$name.ws")"
	else
		printf '%s\t%s\tNA\tNA\tNA\t%s\n' "$name" "$workers" "$(cat "$LOG_DIR/burst-$name.ws")"
	fi
done
