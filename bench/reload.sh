#!/usr/bin/env bash
# bench/reload.sh -- what graceful reloads and worker-count changes cost under load.
#
# Usage:
#   bash bench/reload.sh > reload.tsv
#   SERVER_CPUS=1 WRK_CPUS=0 bash bench/reload.sh   # pin server to CPU 1, wrk to CPU 0
#   BASELINE=0 bash bench/reload.sh                 # skip the no-signal baseline rows
#
# For each case: start the server on a free 127.0.0.1 port, wait until it answers, run
#   wrk -t$WRK_THREADS -c$RELOAD_CONNS -d${RELOAD_DURATION}s
# and, while wrk runs, send a signal to the server's master PID every RELOAD_INTERVAL
# seconds (first one after one interval).  The signal list is cycled, so "HUP" sends HUP
# every time and "TTIN TTOU" alternates +1 worker / -1 worker.  Cases:
#   gunicorn-sync    (-w 2)                 none (baseline), HUP, TTIN/TTOU
#   gunicorn-gthread (-w 2 --threads 4)     none (baseline), HUP, TTIN/TTOU
#   uwsgi            (--http-socket, 2 processes, master)   none (baseline), HUP
# (For uwsgi, SIGHUP is its graceful reload: workers finish their request, then the master
# re-execs itself and re-spawns them; the listening socket stays open throughout.)
#
# stdout: a header, then one TSV row per case:
#   name signals sent requests rps connect read write timeout non2xx errors pids_seen
# sent = signals actually delivered; connect/read/write/timeout = wrk socket errors;
# non2xx = responses with status >= 400; errors = the sum of those five; pids_seen = how
# many distinct PIDs the server's process tree had over the run (master included), which
# shows that workers really were replaced.
#
# Environment (defaults): RELOAD_CONNS (32) RELOAD_DURATION (10, seconds)
#   RELOAD_INTERVAL (1, seconds) BASELINE (1), plus those listed at the top of lib.sh.

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RELOAD_CONNS=${RELOAD_CONNS:-32}
RELOAD_DURATION=${RELOAD_DURATION:-10}
RELOAD_INTERVAL=${RELOAD_INTERVAL:-1}
BASELINE=${BASELINE:-1}

WRK_PID=""
cleanup() {
	[[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null && wait "$WRK_PID" 2>/dev/null
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# reload_case NAME "SIGNALS" ARGV...: one measured run; SIGNALS is "none" or a list such
# as "HUP" or "TTIN TTOU".  "{PORT}" in ARGV is replaced by the chosen port.
reload_case() {
	local name=$1 signals=$2
	shift 2
	local label=${signals// //}
	local port
	port=$(free_port) || die "no free port"
	local -a argv=("${@//\{PORT\}/$port}")
	local tag="$name.${label//\//-}"
	log "$name [$label]: starting on $HOST:$port: ${argv[*]}"
	start_server "$tag" "${argv[@]}"
	if ! wait_ready "$port"; then
		log "$name: exited, or did not answer within ${START_TIMEOUT}s; see $LOG_DIR/$tag.log"
		stop_server
		printf '%s\t%s\t0\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name" "$label"
		return 0
	fi
	# Give the workers a moment: wait_ready only proves that one of them answers.
	sleep 1

	local -a cmd
	mapfile -d '' -t cmd < <(wrk_cmd "$RELOAD_CONNS" "$RELOAD_DURATION" "$port")
	"${cmd[@]}" >"$LOG_DIR/$tag.wrk" 2>&1 &
	WRK_PID=$!

	# Send the signals while wrk runs (at 1, 2, ... intervals after its start); every
	# 250 ms, note the PIDs in the server's tree.
	local -a sigs=()
	[[ $signals != none ]] && read -ra sigs <<<"$signals"
	local sent=0 i=0 now p start next sample=0
	local -A seen=()
	start=$(now_ms)
	next=$((start + RELOAD_INTERVAL * 1000))
	while alive "$WRK_PID"; do
		now=$(now_ms)
		if ((now >= sample)); then
			for p in $(proc_tree "$SERVER_PID"); do seen[$p]=1; done
			sample=$((now + 250))
		fi
		if ((${#sigs[@]} && now >= next && now < start + RELOAD_DURATION * 1000)); then
			if kill -s "${sigs[i % ${#sigs[@]}]}" "$SERVER_PID" 2>/dev/null; then
				sent=$((sent + 1))
			else
				log "$name: could not signal $SERVER_PID (gone?)"
			fi
			i=$((i + 1))
			next=$((next + RELOAD_INTERVAL * 1000))
		fi
		sleep 0.05
	done
	wait "$WRK_PID"
	WRK_PID=""
	for p in $(proc_tree "$SERVER_PID"); do seen[$p]=1; done
	alive "$SERVER_PID" || log "$name: the server died during the run; see $LOG_DIR/$tag.log"
	stop_server

	if ! parse_wrk "$LOG_DIR/$tag.wrk"; then
		log "$name: no result from wrk; see $LOG_DIR/$tag.wrk"
		printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t%s\n' "$name" "$label" "$sent" "${#seen[@]}"
		return 0
	fi
	local rps errors
	rps=$(calc "$W_requests / ($W_duration_us / 1e6)" 0)
	errors=$((W_connect + W_read + W_write + W_timeout + W_status))
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$label" "$sent" \
		"$W_requests" "$rps" "$W_connect" "$W_read" "$W_write" "$W_timeout" "$W_status" \
		"$errors" "${#seen[@]}"
}

# cases NAME "SIGNAL-LIST|SIGNAL-LIST|..." ARGV...: the baseline (unless BASELINE=0), then
# one reload_case per signal list.
cases() {
	local name=$1 lists=$2 list
	shift 2
	((BASELINE)) && reload_case "$name" none "$@"
	IFS='|' read -ra lists <<<"$lists"
	for list in "${lists[@]}"; do reload_case "$name" "$list" "$@"; done
}

# ---------------------------------------------------------------------------------------
need wrk curl ss setsid timeout awk
[[ -n $SERVER_CPUS || -n $WRK_CPUS ]] && need taskset

log "wrk -t$WRK_THREADS -c$RELOAD_CONNS -d${RELOAD_DURATION}s, a signal every ${RELOAD_INTERVAL}s," \
	"server cpus: ${SERVER_CPUS:-any}, wrk cpus: ${WRK_CPUS:-any}, logs: $LOG_DIR"
printf 'name\tsignals\tsent\trequests\trps\tconnect\tread\twrite\ttimeout\tnon2xx\terrors\tpids_seen\n'

GUNICORN_ARGS=(--chdir "$APPS_DIR" -b "$HOST:{PORT}" --log-level warning)
cases gunicorn-sync "HUP|TTIN TTOU" "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 hello_wsgi:app
cases gunicorn-gthread "HUP|TTIN TTOU" "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 -k gthread --threads 4 hello_wsgi:app
# See peers.sh for why uwsgi gets "Connection: close".
cases uwsgi "HUP" "$UWSGI" --http-socket "$HOST:{PORT}" --plugin python3 --master --processes 2 \
	--chdir "$APPS_DIR" --module hello_wsgi:application --need-app --disable-logging \
	--die-on-term --listen 1024 --add-header "Connection: close"
log "done; logs in $LOG_DIR"

# corral, same load, same signals, for each worker type this build has.
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
for k in goroutine sync event; do
	"$CORRAL" -k "$k" --check-config demo >/dev/null 2>&1 || continue
	cases "corral-$k" "HUP|TTIN TTOU" "$CORRAL" -w 2 -k "$k" -b "$HOST:{PORT}" --log-level warning demo
done
