#!/usr/bin/env bash
# bench/slow.sh -- WSGI hello world (apps/hello_wsgi.py, 2 workers) beside slow clients.
#
# Usage:
#   bash bench/slow.sh > slow.tsv
#   SERVERS="corral-wsgi gunicorn-sync" SLOW_CLIENTS=50 bash bench/slow.sh
#
# For each server, on a free port of 127.0.0.1: start it, wait until GET / answers, then
#   alone:      wrk -c$SLOW_WRK_CONNS -d${WRK_DURATION}s              (the normal load by itself)
#   with slow:  the same wrk while bench/apps/gohello/slowclients holds SLOW_CLIENTS connections,
#               each sending its request one byte every SLOW_INTERVAL (about 5 s per request)
# and stop it. A server whose workers read a request before they can serve the next (Gunicorn's
# sync worker, uWSGI's processes) has its workers held by the slow clients: its normal load
# stalls. One that buffers requests in front of the app (corral, gevent) keeps its throughput.
#
# stdout: a header, then one TSV row per server:
#   name  rps_alone  rps_slow  kept  errors_slow  slow_done  slow_errors
# kept = rps_slow / rps_alone; errors_slow = wrk's socket errors + status >= 400 during the run
# with slow clients (a request wrk gave up on after WRK_TIMEOUT counts); slow_done = slow
# requests answered, slow_errors = slow connections that failed.
#
# Environment (defaults): SERVERS (corral-wsgi gunicorn-sync gunicorn-gthread gunicorn-gevent
#   uwsgi) SLOW_CLIENTS (200) SLOW_INTERVAL (100ms) SLOW_WRK_CONNS (16) WRK_DURATION (8)
#   plus those of lib.sh (WRK_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, BENCHBIN, GUNICORN, UWSGI).

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVERS=${SERVERS:-corral-wsgi gunicorn-sync gunicorn-gthread gunicorn-gevent uwsgi}
SLOW_CLIENTS=${SLOW_CLIENTS:-200}
SLOW_INTERVAL=${SLOW_INTERVAL:-100ms}
SLOW_WRK_CONNS=${SLOW_WRK_CONNS:-16}
WRK_DURATION=${WRK_DURATION:-8}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
SLOW_PID=""

cleanup() {
	[[ -n $SLOW_PID ]] && kill -TERM "$SLOW_PID" 2>/dev/null && wait "$SLOW_PID" 2>/dev/null
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# server_argv NAME: the start command line of a server, "{PORT}" for its port.
server_argv() {
	local -a gargs=(--chdir "$APPS_DIR" -b "$HOST:{PORT}" --log-level warning)
	case $1 in
	corral-wsgi) ARGV=("$CORRAL" -w 2 -k wsgi --python /usr/bin/python3 --chdir "$APPS_DIR" -b "$HOST:{PORT}" --log-level warning hello_wsgi:application) ;;
	gunicorn-sync) ARGV=("$GUNICORN" "${gargs[@]}" -w 2 hello_wsgi:app) ;;
	gunicorn-gthread) ARGV=("$GUNICORN" "${gargs[@]}" -w 2 -k gthread --threads 4 hello_wsgi:app) ;;
	gunicorn-gevent) ARGV=("$GUNICORN" "${gargs[@]}" -w 2 -k gevent --worker-connections 1000 hello_wsgi:app) ;;
	uwsgi) ARGV=("$UWSGI" --http-socket "$HOST:{PORT}" --plugin python3 --master --processes 2 --chdir "$APPS_DIR"
		--module hello_wsgi:application --need-app --disable-logging --die-on-term --listen 1024
		--add-header "Connection: close") ;;
	*) die "slow.sh: unknown server $1" ;;
	esac
}

# measure NAME PORT: run wrk, print "rps errors" (NA NA without a result).
measure() {
	local -a cmd
	mapfile -d '' -t cmd < <(wrk_cmd "$SLOW_WRK_CONNS" "$WRK_DURATION" "$2")
	"${cmd[@]}" >"$LOG_DIR/$1.wrk" 2>&1
	if ! parse_wrk "$LOG_DIR/$1.wrk"; then
		echo "NA NA"
		return
	fi
	echo "$(calc "$W_requests / ($W_duration_us / 1e6)" 0) $((W_connect + W_read + W_write + W_timeout + W_status))"
}

need wrk curl ss setsid timeout awk go
log "building slowclients into $BENCHBIN"
mkdir -p "$BENCHBIN"
(cd "$APPS_DIR/gohello" && go build -o "$BENCHBIN/" ./slowclients) || die "go build failed"
log "wrk -c$SLOW_WRK_CONNS -d${WRK_DURATION}s alone, then beside $SLOW_CLIENTS clients sending a byte every $SLOW_INTERVAL; logs: $LOG_DIR"
printf 'name\trps_alone\trps_slow\tkept\terrors_slow\tslow_done\tslow_errors\n'
for name in $SERVERS; do
	port=$(free_port) || die "no free port"
	server_argv "$name"
	start_server "$name" "${ARGV[@]//\{PORT\}/$port}"
	if ! wait_ready "$port"; then
		log "$name: did not answer within ${START_TIMEOUT}s; see $LOG_DIR/$name.log"
		stop_server
		printf '%s\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name"
		continue
	fi
	read -r alone _ < <(measure "$name.alone" "$port")
	"$BENCHBIN/slowclients" -addr "$HOST:$port" -n "$SLOW_CLIENTS" -interval "$SLOW_INTERVAL" \
		-d "$((WRK_DURATION + 3))s" >"$LOG_DIR/$name.slow" 2>&1 &
	SLOW_PID=$!
	sleep 2 # the slow clients have their connections and are trickling
	read -r slow errors < <(measure "$name.slow" "$port")
	wait "$SLOW_PID"
	SLOW_PID=""
	done_=$(sed -n 's/.*slow_requests=\([0-9]*\).*/\1/p' "$LOG_DIR/$name.slow")
	serr=$(sed -n 's/.*slow_errors=\([0-9]*\).*/\1/p' "$LOG_DIR/$name.slow")
	stop_server
	kept=NA
	[[ $alone != NA && $slow != NA && $alone != 0 ]] && kept=$(calc "$slow / $alone" 2)
	log "$name: alone $alone rps, beside slow clients $slow rps ($errors errors), slow answered ${done_:-NA}, failed ${serr:-NA}"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$alone" "$slow" "$kept" "$errors" "${done_:-NA}" "${serr:-NA}"
done
log "done; logs in $LOG_DIR"
