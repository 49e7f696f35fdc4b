#!/usr/bin/env bash
# bench/metrics.sh -- what corral's metrics cost, two TSV tables.
#
#   bash bench/metrics.sh throughput   hello world under wrk, each worker type in METRICS_CLASSES, with the
#                                      metrics off and on (--metrics-bind), ROUNDS rounds of the two
#                                      alternately in the same run, so the machine's drift hits both alike.
#                                      Columns: type; the median rps off and on and on/off, the median of
#                                      the rounds' ratios; the server's CPU time per request (its process
#                                      tree's user+system over the measured run), the least of the rounds
#                                      off and on (the least disturbed by other load), and on/off; the cost
#                                      in percent from those (on/off - 1), which moves less than rps on a
#                                      shared machine.
#                                      "off" is --control-socket none and no --metrics-bind: the workers keep
#                                      no scoreboard. With --metrics-bind a worker fills its scoreboard (a few atomic adds
#                                      per request) and the arbiter reads it each tick and serves /metrics;
#                                      a Prometheus-like scraper fetches /metrics every SCRAPE_EVERY seconds
#                                      during the "on" runs.
#   bash bench/metrics.sh scrape       GET /metrics from an arbiter with SCRAPE_WORKERS (16) workers,
#                                      SCRAPES (100) times one after the other, after 10 to warm up: the
#                                      median, p99 and max time (curl's time_total), the size and the series.
#
# Environment (defaults): METRICS_CLASSES ("sync goroutine event") ROUNDS (3) WRK_CONNS (64)
#   WRK_DURATION (5) WARMUP (1) SCRAPE_EVERY (1) SCRAPE_WORKERS (16) SCRAPES (100) CORRAL (bin/corral),
#   plus those of lib.sh. Everything runs on 127.0.0.1.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
METRICS_CLASSES=${METRICS_CLASSES:-sync goroutine event}
ROUNDS=${ROUNDS:-3}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-5}
WARMUP=${WARMUP:-1}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
SCRAPE_WORKERS=${SCRAPE_WORKERS:-16}
SCRAPES=${SCRAPES:-100}
need wrk curl
[ -x "$CORRAL" ] || die "no $CORRAL: make build"

SCRAPER_PID=""
cleanup() {
	[[ -n $SCRAPER_PID ]] && kill "$SCRAPER_PID" 2>/dev/null
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# least: the smallest of the numbers on stdin, one a line.
least() { sort -g | head -1; }

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# run_once CLASS on|off: one measured wrk run; sets RPS. (Not in a $(...) subshell: the trap that
# stops the server must see it.)
run_once() {
	local class=$1 mode=$2 port mport=""
	port=$(free_port) || die "no free port"
	local -a argv=("$CORRAL" -w 2 -k "$class" -b "$HOST:$port" --log-level warning)
	if [[ $mode == on ]]; then
		mport=$(free_port) || die "no free port"
		while [[ $mport == "$port" ]]; do mport=$(free_port); done
		argv+=(--metrics-bind "$HOST:$mport")
	else
		# The control socket (on by default) fills the scoreboard too: off means both off.
		argv+=(--control-socket none)
	fi
	argv+=(demo)
	start_server "metrics-$class-$mode" "${argv[@]}"
	wait_ready "$port" || die "corral -k $class ($mode) did not start; see $LOG_DIR/metrics-$class-$mode.log"
	if [[ $mode == on ]]; then
		(while :; do curl -fsS -m 2 -o /dev/null "http://$HOST:$mport/metrics"; sleep "$SCRAPE_EVERY"; done) &
		SCRAPER_PID=$!
	fi
	local -a cmd
	mapfile -d '' -t cmd < <(wrk_cmd "$WRK_CONNS" "$WARMUP" "$port")
	"${cmd[@]}" >/dev/null 2>&1
	mapfile -d '' -t cmd < <(wrk_cmd "$WRK_CONNS" "$WRK_DURATION" "$port")
	local cpu0 cpu1
	cpu0=$(tree_cpu "$SERVER_PID")
	"${cmd[@]}" >"$LOG_DIR/wrk-$class-$mode.out" 2>&1
	cpu1=$(tree_cpu "$SERVER_PID")
	if [[ -n $SCRAPER_PID ]]; then
		kill "$SCRAPER_PID" 2>/dev/null
		wait "$SCRAPER_PID" 2>/dev/null
		SCRAPER_PID=""
	fi
	stop_server
	parse_wrk "$LOG_DIR/wrk-$class-$mode.out" || die "no wrk result for $class ($mode)"
	RPS=$(calc "$W_requests / ($W_duration_us / 1000000)" 0)
	CPU_US=$(calc "($cpu1 - $cpu0) * 1000000 / $W_requests" 2)
}

throughput() {
	printf 'type\trps_off\trps_on\trps_on_over_off\tcpu_us_per_req_off\tcpu_us_per_req_on\tcpu_on_over_off\tcost_pct\n'
	local class r off on coff con
	for class in $METRICS_CLASSES; do
		local offs="" ons="" ratios="" coffs="" cons=""
		for r in $(seq 1 "$ROUNDS"); do
			# Alternate which goes first, so neither always follows the other.
			if ((r % 2)); then
				run_once "$class" off && off=$RPS coff=$CPU_US && run_once "$class" on && on=$RPS con=$CPU_US
			else
				run_once "$class" on && on=$RPS con=$CPU_US && run_once "$class" off && off=$RPS coff=$CPU_US
			fi
			log "$class round $r: off $off rps ($coff us CPU/req), on $on rps ($con us CPU/req)"
			offs+="$off"$'\n' ons+="$on"$'\n' ratios+="$(calc "$on / $off" 4)"$'\n'
			coffs+="$coff"$'\n' cons+="$con"$'\n'
		done
		local ratio coffmin conmin
		ratio=$(printf '%s' "$ratios" | median)
		coffmin=$(printf '%s' "$coffs" | least)
		conmin=$(printf '%s' "$cons" | least)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "corral-$class" "$(printf '%s' "$offs" | median)" "$(printf '%s' "$ons" | median)" \
			"$(calc "$ratio" 3)" "$coffmin" "$conmin" "$(calc "$conmin / $coffmin" 3)" "$(calc "($conmin / $coffmin - 1) * 100" 1)"
	done
}

scrape() {
	local port mport
	port=$(free_port) || die "no free port"
	mport=$(free_port) || die "no free port"
	while [[ $mport == "$port" ]]; do mport=$(free_port); done
	start_server metrics-scrape "$CORRAL" -w "$SCRAPE_WORKERS" -b "$HOST:$port" --metrics-bind "$HOST:$mport" \
		--ready-min "$SCRAPE_WORKERS" --log-level warning demo
	wait_ready "$port" || die "corral -w $SCRAPE_WORKERS did not start; see $LOG_DIR/metrics-scrape.log"
	local deadline=$((SECONDS + START_TIMEOUT))
	until curl -fsS -m 1 -o /dev/null "http://$HOST:$mport/readyz" 2>/dev/null; do
		((SECONDS < deadline)) || die "/readyz never answered 200 with $SCRAPE_WORKERS workers"
		sleep 0.2
	done
	curl -fsS -m 2 -o /dev/null "http://$HOST:$port/" # one request, so every series has a value
	local i
	for i in $(seq 1 10); do curl -fsS -m 5 -o /dev/null "http://$HOST:$mport/metrics"; done
	: >"$LOG_DIR/scrape.times"
	for i in $(seq 1 "$SCRAPES"); do
		curl -fsS -m 5 -o /dev/null -w '%{time_total}\n' "http://$HOST:$mport/metrics" >>"$LOG_DIR/scrape.times"
	done
	curl -fsS -m 5 -o "$LOG_DIR/scrape.txt" "http://$HOST:$mport/metrics"
	stop_server
	local bytes series p99 med mx
	bytes=$(wc -c <"$LOG_DIR/scrape.txt")
	series=$(grep -cv '^#' "$LOG_DIR/scrape.txt")
	med=$(awk '{print $1 * 1000}' "$LOG_DIR/scrape.times" | median)
	p99=$(awk '{print $1 * 1000}' "$LOG_DIR/scrape.times" | sort -g | awk '{v[NR] = $1} END {i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; print v[i]}')
	mx=$(awk '{print $1 * 1000}' "$LOG_DIR/scrape.times" | sort -g | tail -1)
	printf 'workers\tscrapes\tmedian_ms\tp99_ms\tmax_ms\tbytes\tseries\n'
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SCRAPE_WORKERS" "$SCRAPES" "$(calc "$med" 2)" "$(calc "$p99" 2)" "$(calc "$mx" 2)" "$bytes" "$series"
}

case ${1:-} in
throughput) throughput ;;
scrape) scrape ;;
*) die "usage: bench/metrics.sh throughput|scrape" ;;
esac
