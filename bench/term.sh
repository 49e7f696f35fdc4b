#!/usr/bin/env bash
# bench/term.sh -- TERM under load: what a graceful stop still serves, and what it breaks.
#
# Usage:
#   bash bench/term.sh > term.tsv
#   TERM_SERVERS="corral-goroutine gunicorn-sync" TERM_MODES=close bash bench/term.sh
#
# For each server and each mode: start it on a free 127.0.0.1 port, wait until it answers, put
# it under load with termload (bench/apps/gohello/termload, TERM_CONNS connections sending
# GET / in a loop), and TERM_AT_MS (3000) ms later send TERM to the master and wait (up to
# TERM_TIMEOUT seconds, 20) for it to exit.  The load goes on meanwhile: each connection keeps
# sending until a connect fails (refused once the listener is closed), then stops, so a failed
# connect is counted at most once per connection after the TERM.  termload is used, not wrk,
# because wrk retries a refused connect at once (thousands of "connect" errors in a second, as
# many as its loop manages) and counts a connect that hangs on a dropped SYN (corral holds new
# connections off that way while it drains) as a request timeout.
# Modes (TERM_MODES): close -- "Connection: close", a new connection per request, so the listen
# backlog is full of connections the server has not accepted yet when TERM comes: they are the
# ones a stop can reset -- and keep-alive.
# Servers (TERM_SERVERS): gunicorn-sync, gunicorn-gthread, uwsgi (with --die-on-term, so TERM
# means stop), corral-goroutine, corral-sync, corral-event (those this build has); 2 workers.
#
# stdout: a header, then one TSV row per case:
#   name mode load_s requests after_term drain_ms connect read write timeout non2xx accepted_failed
# load_s: load before the TERM (measured); requests: complete responses over the whole run;
# after_term: those completed after the TERM; drain_ms: from the TERM until the master exited;
# connect: connects that failed (refused, or timed out), the expected end of the load, at most
# one per connection after the TERM; read: a connection the server's kernel had accepted broke
# before the whole response (stderr tells how many got no byte of it: a reset backlog); write:
# sending the request failed; timeout: no response within WRK_TIMEOUT seconds; non2xx: status
# outside 2xx; accepted_failed = read + write + timeout + non2xx: the requests the stop broke.
#
# Environment (defaults): TERM_CONNS (32) TERM_AT_MS (3000) TERM_TIMEOUT (20, seconds)
#   TERM_MODES ("close keep-alive") TERM_SERVERS (all six) CORRAL (bin/corral), plus those of
#   lib.sh (WRK_TIMEOUT is termload's request timeout, WRK_CPUS pins it, BENCHBIN gets it).
#   About 1.5 minutes with everything on.

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TERM_CONNS=${TERM_CONNS:-32}
TERM_AT_MS=${TERM_AT_MS:-3000}
TERM_TIMEOUT=${TERM_TIMEOUT:-20}
TERM_MODES=${TERM_MODES:-close keep-alive}
TERM_SERVERS=${TERM_SERVERS:-gunicorn-sync gunicorn-gthread uwsgi corral-goroutine corral-sync corral-event}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}

LOAD_PID=""
cleanup() {
	if [[ -n $LOAD_PID ]]; then
		kill -INT "$LOAD_PID" 2>/dev/null
		wait "$LOAD_PID" 2>/dev/null
	fi
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# term_case NAME MODE ARGV...: one measured run.  "{PORT}" in ARGV is replaced by the port.
term_case() {
	local name=$1 mode=$2
	shift 2
	local port
	port=$(free_port) || die "no free port"
	local tag="$name.term-$mode"
	local -a argv=("${@//\{PORT\}/$port}")
	log "$name [TERM, $mode]: starting on $HOST:$port: ${argv[*]}"
	start_server "$tag" "${argv[@]}"
	if ! wait_ready "$port"; then
		log "$name: exited, or did not answer within ${START_TIMEOUT}s; see $LOG_DIR/$tag.log"
		stop_server
		printf '%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name" "$mode"
		return 0
	fi
	sleep 1 # wait_ready only proves that one worker answers

	local -a cmd=("$BENCHBIN/termload" -addr "$HOST:$port" -c "$TERM_CONNS" -timeout "${WRK_TIMEOUT}s"
		-max "$((TERM_AT_MS / 1000 + TERM_TIMEOUT + 30))s")
	[[ $mode == close ]] && cmd+=(-close)
	[[ -n $WRK_CPUS ]] && cmd=(taskset -c "$WRK_CPUS" "${cmd[@]}")
	# No `timeout` wrapper: it would die of the SIGUSR1 meant for termload (-max bounds it).
	"${cmd[@]}" >"$LOG_DIR/$tag.load" 2>&1 &
	LOAD_PID=$!

	local start t0 drain=NA master=$SERVER_PID
	nap_open
	# Until termload handles SIGUSR1 (its default action would kill it), at most 10 s.
	set_now
	start=$NOW
	until grep -q '^termload: running' "$LOG_DIR/$tag.load" 2>/dev/null; do
		alive "$LOAD_PID" && set_now && ((NOW < start + 10000)) || break
		nap 0.02
	done
	set_now
	start=$NOW
	while set_now && ((NOW < start + TERM_AT_MS)); do nap 0.02; done
	kill -USR1 "$LOAD_PID" 2>/dev/null # "the server is told to stop now"
	set_now
	t0=$NOW
	if kill -TERM "$master" 2>/dev/null; then
		while alive "$master" && set_now && ((NOW < t0 + TERM_TIMEOUT * 1000)); do nap 0.01; done
		set_now
		if alive "$master"; then
			log "$name: still running ${TERM_TIMEOUT}s after TERM; see $LOG_DIR/$tag.log"
		else
			drain=$((NOW - t0))
		fi
	else
		log "$name: could not signal $master (gone?); see $LOG_DIR/$tag.log"
	fi
	# The load ends by itself once every connection has had its connect refused (a dropped
	# SYN is retried after 1 s, then 3 s); give it 10 s, then stop it.
	local deadline=$((NOW + 10000))
	while alive "$LOAD_PID" && set_now && ((NOW < deadline)); do nap 0.05; done
	nap_close
	if alive "$LOAD_PID"; then
		log "$name: the load did not end by itself; interrupting it"
		kill -INT "$LOAD_PID" 2>/dev/null
	fi
	wait "$LOAD_PID"
	LOAD_PID=""
	remember_tree
	local left=0 e
	for e in $SERVER_TREE; do alive "${e%%:*}" && left=$((left + 1)); done
	((left)) && log "$name: $left process(es) of its tree still there after the master exited"
	stop_server

	if ! parse_wrk "$LOG_DIR/$tag.load"; then
		log "$name: no result from termload; see $LOG_DIR/$tag.load"
		printf '%s\t%s\tNA\tNA\tNA\t%s\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name" "$mode" "$drain"
		return 0
	fi
	local load_s=NA failed
	((W_mark_us >= 0)) && load_s=$(calc "$W_mark_us / 1e6" 2)
	failed=$((W_read + W_write + W_timeout + W_status))
	log "$name [TERM, $mode]: requests=$W_requests after_term=$W_after drain_ms=$drain connect=$W_connect" \
		"(refused $W_refused) read=$W_read (no byte of the response: $W_unanswered) write=$W_write" \
		"timeout=$W_timeout non2xx=$W_status"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$load_s" "$W_requests" \
		"$W_after" "$drain" "$W_connect" "$W_read" "$W_write" "$W_timeout" "$W_status" "$failed"
}

# cases NAME ARGV...: term_case for each mode, if NAME is in TERM_SERVERS.
cases() {
	local name=$1 mode
	shift
	[[ " $TERM_SERVERS " == *" $name "* ]] || return 0
	for mode in $TERM_MODES; do term_case "$name" "$mode" "$@"; done
}

# ---------------------------------------------------------------------------------------
need curl ss setsid awk go
[[ -n $WRK_CPUS || -n $SERVER_CPUS ]] && need taskset
mkdir -p "$BENCHBIN"
(cd "$APPS_DIR/gohello" && go build -o "$BENCHBIN/termload" ./termload) || die "go build termload failed"

log "termload -c $TERM_CONNS, TERM after ${TERM_AT_MS} ms; modes: $TERM_MODES;" \
	"server cpus: ${SERVER_CPUS:-any}, load cpus: ${WRK_CPUS:-any}, logs: $LOG_DIR"
printf 'name\tmode\tload_s\trequests\tafter_term\tdrain_ms\tconnect\tread\twrite\ttimeout\tnon2xx\taccepted_failed\n'

GUNICORN_ARGS=(--chdir "$APPS_DIR" -b "$HOST:{PORT}" --log-level warning)
cases gunicorn-sync "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 hello_wsgi:app
cases gunicorn-gthread "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 -k gthread --threads 4 hello_wsgi:app
# --die-on-term: TERM stops uWSGI (without it, uWSGI 2.0 reloads on TERM).  See peers.sh for
# the "Connection: close" header.
cases uwsgi "$UWSGI" --http-socket "$HOST:{PORT}" --plugin python3 --master --processes 2 \
	--chdir "$APPS_DIR" --module hello_wsgi:application --need-app --disable-logging \
	--die-on-term --listen 1024 --add-header "Connection: close"
for k in goroutine sync event; do
	"$CORRAL" -k "$k" --check-config demo >/dev/null 2>&1 || continue
	cases "corral-$k" "$CORRAL" -w 2 -k "$k" -b "$HOST:{PORT}" --log-level warning demo
done
log "done; logs in $LOG_DIR"
