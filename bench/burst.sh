#!/usr/bin/env bash
# bench/burst.sh -- a bursty load against a fixed herd and an autoscaled one.
#
# Usage:
#   bash bench/burst.sh > burst.tsv
#   BURST_MAX=4 BURST_SECONDS=10 BURST_COUNT=2 BURST_ROUNDS=1 bash bench/burst.sh
#
# For each of "fixed" (-w MAX) and "scaled" (-w 1:MAX --scale-down-delay BURST_DELAY), sync
# workers of the demo app on a free port of 127.0.0.1: idle for BURST_IDLE seconds, then
# BURST_COUNT times: wrk -c BURST_CONNS of GET /work?ms=20 for BURST_SECONDS, then idle for
# BURST_IDLE seconds. The goal of -w MIN:MAX: a p99 within 20% of fixed MAX's at half its
# worker-seconds or less. The pair runs BURST_ROUNDS times, fixed first in odd rounds and
# scaled first in even ones, so that a machine whose load drifts (other work on it) favours
# neither; compare the two rows of a round (bench/run.sh prints each round's ratios and their
# medians: a p99 on a shared machine moves by tens of percent from one run to the next).
#
# worker_seconds is the integral of the arbiter's live children (booting, serving and
# retiring workers alike) over the run, from the first idle second to the last: a sample
# about every 100 ms, each weighted by the time since the one before (bash's EPOCHREALTIME,
# so a late sample on a loaded machine is not a lost one). The per-sample counts are kept in
# $LOG_DIR/burst-NAME.samples ("seconds workers").
#
# Whether the goal can be met at all depends on the profile: the scaled herd pays MAX workers
# through each burst and --scale-down-delay after it, then one less every 2 s down to 1, and
# 1 worker for the rest; fixed MAX pays MAX throughout. With MAX 4, half of fixed's
# worker-seconds needs the bursts plus their delays to be under about a third of the run:
# hence idle periods several times a burst's length, as a bursty service's are.
#
# stdout: a header, then one TSV row per mode:
#   round  name  workers  p99_ms  rps  errors  worker_seconds  seconds
# p99_ms is the worst of the bursts' p99s; rps the requests over the bursts' time.
#
# Environment (defaults): BURST_MAX (4) BURST_CONNS (64) BURST_SECONDS (10) BURST_IDLE (30)
#   BURST_COUNT (1) BURST_DELAY (5) BURST_ROUNDS (3), plus those of lib.sh.

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAX=${BURST_MAX:-4}
CONNS=${BURST_CONNS:-64}
BURST=${BURST_SECONDS:-10}
IDLE=${BURST_IDLE:-30}
COUNT=${BURST_COUNT:-1}
DELAY=${BURST_DELAY:-5}
ROUNDS=${BURST_ROUNDS:-3}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}

trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# count_workers STOPFILE SAMPLES: until STOPFILE exists, count SERVER_PID's children about
# every 100 ms into SAMPLES; then print "worker_seconds seconds" (one decimal each).
count_workers() {
	local stop=$1 samples=$2 t0 prev now n=0 sum=0
	t0=${EPOCHREALTIME//[.,]/}
	prev=$t0
	nap_open
	: >"$samples"
	while [[ ! -e $stop ]]; do
		child_pids "$SERVER_PID"
		now=${EPOCHREALTIME//[.,]/}
		# the count since the sample before: a step is seen at most one sample late
		sum=$((sum + n * (now - prev)))
		n=${#CHILD_PIDS[@]}
		prev=$now
		printf '%s %d\n' "$(((now - t0) / 1000))" "$n" >>"$samples"
		nap 0.1
	done
	now=${EPOCHREALTIME//[.,]/}
	sum=$((sum + n * (now - prev)))
	nap_close
	echo "$(calc "$sum / 1e6" 1) $(calc "($now - $t0) / 1e6" 1)"
}

# run_mode ROUND NAME: one run of the profile against NAME's herd (fixed or scaled); prints its row.
run_mode() {
	local round=$1 name=$2 port workers run stop counter p99=0 requests=0 duration=0 errors=0 parsed=1 i out ws secs
	local -a cmd
	port=$(free_port) || die "no free port"
	workers=$MAX
	[[ $name == scaled ]] && workers=1:$MAX
	run=burst-$round-$name
	start_server "$run" "$CORRAL" -w "$workers" --scale-down-delay "$DELAY" -k sync -b "$HOST:$port" demo
	wait_ready "$port" || die "$name: corral did not answer on port $port"
	stop=$LOG_DIR/$run.stop
	rm -f "$stop"
	count_workers "$stop" "$LOG_DIR/$run.samples" >"$LOG_DIR/$run.ws" &
	counter=$!
	sleep "$IDLE"
	for ((i = 1; i <= COUNT; i++)); do
		out=$LOG_DIR/$run-$i.wrk
		cmd=(timeout --foreground -k 5 $((BURST + 15)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${BURST}s" --timeout "${WRK_TIMEOUT}s"
			-s "$BENCH_DIR/wrk_report.lua" "http://$HOST:$port/work?ms=20")
		[[ -n $WRK_CPUS ]] && cmd=(taskset -c "$WRK_CPUS" "${cmd[@]}")
		"${cmd[@]}" >"$out" 2>&1
		if parse_wrk "$out"; then
			((W_p99_us > p99)) && p99=$W_p99_us
			requests=$((requests + W_requests)) duration=$((duration + W_duration_us))
			errors=$((errors + W_connect + W_read + W_write + W_timeout + W_status))
		else
			parsed=0
		fi
		sleep "$IDLE"
	done
	touch "$stop"
	wait "$counter"
	stop_server
	read -r ws secs <"$LOG_DIR/$run.ws"
	if ((parsed)); then
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$workers" "$(calc "$p99 / 1000" 1)" \
			"$(calc "$requests / ($duration / 1e6)" 0)" "$errors" "$ws" "$secs"
	else
		printf '%s\t%s\t%s\tNA\tNA\tNA\t%s\t%s\n' "$round" "$name" "$workers" "$ws" "$secs"
	fi
}

need wrk curl setsid timeout awk
log "$ROUNDS round(s) of $COUNT burst(s) of wrk -c$CONNS -d${BURST}s /work?ms=20, ${IDLE}s idle around each: -w $MAX and -w 1:$MAX (--scale-down-delay $DELAY); logs: $LOG_DIR"
printf 'round\tname\tworkers\tp99_ms\trps\terrors\tworker_seconds\tseconds\n'
for ((round = 1; round <= ROUNDS; round++)); do
	order="fixed scaled"
	((round % 2 == 0)) && order="scaled fixed"
	for name in $order; do
		run_mode "$round" "$name"
	done
done
