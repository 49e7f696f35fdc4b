#!/usr/bin/env bash
# bench/reload.sh -- what reloads, scaling, binary upgrades and killed workers cost under load.
#
# Usage:
#   bash bench/reload.sh > reload.tsv
#   SERVER_CPUS=1 WRK_CPUS=0 bash bench/reload.sh   # pin server to CPU 1, wrk to CPU 0
#   BASELINE=0 bash bench/reload.sh                 # skip the no-signal baseline rows
#   RELOAD_SERVERS="corral-goroutine uwsgi" RELOAD_FAULTS="upgrade kill" RELOAD_DURATION=3 \
#       bash bench/reload.sh                        # a subset, shorter
#
# For each case: start the server on a free 127.0.0.1 port (with --pid FILE where it has one),
# wait until it answers, run
#   wrk -t$WRK_THREADS -c$RELOAD_CONNS -d${RELOAD_DURATION}s
# and, while wrk runs, inflict one fault on it.  A periodic fault acts first one interval after
# wrk starts, then on a fixed schedule until the load ends; the interval kept really is
# measured and printed (interval_ms).  The faults (RELOAD_FAULTS, "none" being BASELINE):
#   none     nothing: the baseline.
#   hup      HUP to the master every RELOAD_HUP_MS (500) ms: a graceful reload.
#   scale    TTIN and TTOU to the master, alternately, every RELOAD_SCALE_MS (250) ms: +1 worker,
#            -1 worker.  uWSGI has no such signals: no row.
#   upgrade  a binary upgrade, begun RELOAD_UPGRADE_AT_MS (3000) ms into the load:
#            corral: one USR2 to the arbiter.  The new arbiter takes over by itself and the old
#              one exits once the new one's workers serve; the pid file (--pid FILE) names the
#              new one (FILE.2 meanwhile), which is followed, tracked and stopped from then on.
#            Gunicorn: its documented procedure.  USR2 to the old master; once the new master
#              is up -- Gunicorn 20.1 writes FILE.2 for it (older releases renamed the old
#              master's file FILE.oldbin and wrote FILE); both are looked for -- and has all its
#              workers, RELOAD_UPGRADE_SETTLE_MS (1000) ms for them to load the app, then WINCH
#              to the old master, up to 1 s for its workers to go (Gunicorn ignores WINCH unless
#              daemonized: the log says so), then TERM to it.
#            uWSGI: no binary upgrade of its own, but its HUP (graceful reload) re-executes the
#              master's binary in place (same PID) and respawns the workers: the nearest
#              equivalent, so its row is one HUP at the same moment, labelled "HUP".
#            takeover_ms: from the first signal until the old master is gone (corral, Gunicorn)
#            or, for uWSGI, until its master has as many workers as before, all new.  If that
#            does not happen within RELOAD_UPGRADE_TIMEOUT_MS (20000) ms it is NA and the log
#            says why.
#   kill     SIGKILL to one child of the master (a worker), picked at random each time, every
#            RELOAD_KILL_MS (500) ms.  Only the requests in flight on the killed worker should
#            fail; with keep-alive that is one per connection it held.
# Servers (RELOAD_SERVERS; each with 2 workers, the hello world app):
#   gunicorn-sync (-w 2), gunicorn-gthread (-w 2 --threads 4), uwsgi (2 processes, master,
#   --die-on-term), and corral-goroutine, corral-sync, corral-event (those this build has).
#
# stdout: a header, then one TSV row per case:
#   name fault signals sent first_ms interval_ms duration_s requests rps connect read write
#   timeout non2xx errors pids_seen takeover_ms conns_killed
# signals = what was sent ("TTIN/TTOU" alternates); sent = signals actually delivered;
# first_ms = when the first one went, from the start of the load; interval_ms = mean gap
# between the first and the last (NA below 2); duration_s = the load's length as wrk measured
# it; connect/read/write/timeout = wrk socket errors; non2xx = responses with status >= 400;
# errors = the sum of those five; pids_seen = how many distinct PIDs the server's process tree
# (both masters' trees during an upgrade) had over the run, which shows that workers really
# were replaced; takeover_ms: see upgrade; conns_killed (kill only) = the established
# connections the killed workers held on the port when they were killed (counted with ss while
# the worker is stopped by SIGSTOP, just before its SIGKILL), summed: each has at most one
# request in flight (wrk does not pipeline), so errors above it are requests that failed
# elsewhere than on a killed worker.
#
# Environment (defaults): RELOAD_CONNS (32) RELOAD_DURATION (10, seconds) RELOAD_HUP_MS (500)
#   RELOAD_SCALE_MS (250) RELOAD_KILL_MS (500) RELOAD_UPGRADE_AT_MS (3000)
#   RELOAD_UPGRADE_SETTLE_MS (1000) RELOAD_UPGRADE_TIMEOUT_MS (20000) BASELINE (1)
#   RELOAD_FAULTS ("hup scale upgrade kill") RELOAD_SERVERS (all six) CORRAL (bin/corral),
#   RELOAD_LOG_LEVEL (warning: Gunicorn's and corral's --log-level, info to see what they did),
#   plus those listed at the top of lib.sh.  With RELOAD_DURATION=10 and everything on, the
#   run takes about 7 minutes.

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# A USR2 leaves the new master an orphan once the old one exits: have it re-parented to us.
become_subreaper "$@"

RELOAD_CONNS=${RELOAD_CONNS:-32}
RELOAD_DURATION=${RELOAD_DURATION:-10}
RELOAD_HUP_MS=${RELOAD_HUP_MS:-500}
RELOAD_SCALE_MS=${RELOAD_SCALE_MS:-250}
RELOAD_KILL_MS=${RELOAD_KILL_MS:-500}
RELOAD_UPGRADE_AT_MS=${RELOAD_UPGRADE_AT_MS:-3000}
RELOAD_UPGRADE_SETTLE_MS=${RELOAD_UPGRADE_SETTLE_MS:-1000}
RELOAD_UPGRADE_TIMEOUT_MS=${RELOAD_UPGRADE_TIMEOUT_MS:-20000}
RELOAD_FAULTS=${RELOAD_FAULTS:-hup scale upgrade kill}
RELOAD_SERVERS=${RELOAD_SERVERS:-gunicorn-sync gunicorn-gthread uwsgi corral-goroutine corral-sync corral-event}
BASELINE=${BASELINE:-1}
RELOAD_LOG_LEVEL=${RELOAD_LOG_LEVEL:-warning}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
WORKERS=2 # every server below runs 2

WRK_PID=""
# During an upgrade, the new master, until it has taken over (then it becomes SERVER_PID):
# its PID and its tree as "pid:starttime ..." (see lib.sh's remember_tree).
UP_PID=""
UP_TREE=""
UP_PIDFILE="" # the pid file and the old master's PID, while an upgrade may leave a new master
UP_OLD=""

# up_remember: add the new master's tree to UP_TREE (lib.sh's remember_tree in a subshell, so
# SERVER_PID and SERVER_TREE here are never swapped out).
up_remember() {
	[[ -n $UP_PID ]] || return 0
	UP_TREE=$(
		SERVER_PID=$UP_PID SERVER_TREE=$UP_TREE
		remember_tree
		echo "$SERVER_TREE"
	)
}

# stop_up: lib.sh's stop_server applied to the new master of an unfinished upgrade.
stop_up() {
	[[ -n $UP_PID ]] || return 0
	up_remember
	(
		SERVER_PID=$UP_PID SERVER_TREE=$UP_TREE
		stop_server
	)
	UP_PID=""
	UP_TREE=""
}

cleanup() {
	[[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null && wait "$WRK_PID" 2>/dev/null
	[[ -z $UP_PID ]] && find_new_master # interrupted in the middle of an upgrade?
	stop_up
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# kill_worker: SIGKILL one child of the master, picked at random; 1 if it has none right now.
# Adds the established connections it had on the port (ss, while it is stopped with SIGSTOP)
# to conns_killed (fault_case's).
kill_worker() {
	child_pids "$SERVER_PID"
	((${#CHILD_PIDS[@]})) || return 1
	local v=${CHILD_PIDS[RANDOM % ${#CHILD_PIDS[@]}]}
	# Still the master's child (not an exited and recycled PID)?  Read without a fork.
	local line
	read -r line 2>/dev/null <"/proc/$v/stat" || return 1
	line=${line##*) }
	line=${line#* } # drop the state: the parent's PID comes next
	[[ ${line%% *} == "$SERVER_PID" ]] || return 1
	# Stopped, it can neither accept nor close a connection while ss counts them (a few ms).
	kill -STOP "$v" 2>/dev/null || return 1
	local held
	held=$(ss -Htnp state established "( sport = :$port )" 2>/dev/null | grep -c "pid=$v,")
	kill -KILL "$v" 2>/dev/null || return 1
	conns_killed=$((conns_killed + ${held:-0}))
}

# upgrade_step NOW: advance the upgrade of fault_case one step, by its variables (dynamic
# scope): up_state 0 not begun, 1 signalled, 2 new master ready, 3 WINCH sent, 4 TERM sent,
# 9 done, -1 failed.
upgrade_step() {
	local now=$1 p
	case $up_state in
	0)
		((now >= start + RELOAD_UPGRADE_AT_MS)) || return 0
		old_pid=$SERVER_PID
		t_sig=$now
		first=$now
		[[ $name == uwsgi ]] || UP_PIDFILE=$pidfile UP_OLD=$old_pid
		if [[ $name == uwsgi ]]; then
			child_pids "$old_pid"
			up_kids=" ${CHILD_PIDS[*]} "
			kill -HUP "$old_pid" 2>/dev/null || { up_fail "could not signal $old_pid"; return; }
		else
			kill -USR2 "$old_pid" 2>/dev/null || { up_fail "could not signal $old_pid"; return; }
		fi
		sent=1
		up_state=1
		;;
	1 | 2 | 3 | 4)
		# The checks below may fork (pid files): take the time afresh for what they find.
		if ((now > t_sig + RELOAD_UPGRADE_TIMEOUT_MS)); then
			up_fail "no takeover within ${RELOAD_UPGRADE_TIMEOUT_MS} ms (state $up_state)"
			return
		fi
		if [[ $name == uwsgi ]]; then
			# The same master re-executes itself; done once it has its workers back, all new.
			child_pids "$old_pid"
			((${#CHILD_PIDS[@]} >= WORKERS)) || return 0
			for p in "${CHILD_PIDS[@]}"; do [[ $up_kids == *" $p "* ]] && return 0; done
			set_now
			takeover=$((NOW - t_sig))
			up_state=9
			return
		fi
		# Whether the old master is still there, noted BEFORE the pid files are read: the new
		# one has written FILE.2 before the old one exits, so a dead old master and no new
		# one in the files means a failed upgrade, not a handover between two reads.
		local old_alive=0
		alive "$old_pid" && old_alive=1
		if [[ -z $UP_PID ]] && find_new_master; then
			set_now
			now=$NOW
			log "$name: new master $UP_PID ($((now - t_sig)) ms after USR2)"
		fi
		if [[ -n $UP_PID ]] && ! alive "$UP_PID"; then
			up_fail "the new master $UP_PID exited; see $LOG_DIR/$tag.log"
			return
		fi
		if ((!old_alive)); then
			if [[ -z $UP_PID ]]; then
				up_fail "the old master exited, no new one in $pidfile; see $LOG_DIR/$tag.log"
				return
			fi
			# Taken over: the new master is the server from now on.
			set_now
			takeover=$((NOW - t_sig))
			up_remember
			SERVER_PID=$UP_PID
			SERVER_TREE+="$UP_TREE"
			UP_PID=""
			UP_TREE=""
			UP_PIDFILE=""
			UP_OLD=""
			wait "$old_pid" 2>/dev/null # our child: reap it
			up_state=9
			log "$name: $SERVER_PID took over after $takeover ms"
			return
		fi
		[[ $name == gunicorn-* ]] || return 0 # corral: it hands over by itself
		case $up_state in
		1) # Gunicorn: wait for the new master's workers, then let them load the app.
			[[ -n $UP_PID ]] || return 0
			child_pids "$UP_PID"
			((${#CHILD_PIDS[@]} >= WORKERS)) || return 0
			t_ready=$now
			up_state=2
			log "$name: the new master has its workers ($((now - t_sig)) ms after USR2)"
			;;
		2)
			((now >= t_ready + RELOAD_UPGRADE_SETTLE_MS)) || return 0
			kill -WINCH "$old_pid" 2>/dev/null && sent=$((sent + 1))
			t_winch=$now
			up_state=3
			log "$name: WINCH to the old master ($((now - t_sig)) ms after USR2)"
			;;
		3)
			child_pids "$old_pid"
			((${#CHILD_PIDS[@]} == 0 || now >= t_winch + 1000)) || return 0
			kill -TERM "$old_pid" 2>/dev/null && sent=$((sent + 1))
			up_state=4
			log "$name: TERM to the old master ($((now - t_sig)) ms after USR2)"
			;;
		esac
		;;
	esac
}

# find_new_master: during an upgrade (UP_PIDFILE, UP_OLD), look for the new master in FILE.2 (corral, Gunicorn 20.1), then in FILE once it names another process
# (corral after the handover; Gunicorn releases that renamed the old one's FILE.oldbin); if
# found, track it as UP_PID.  1 if not found.
find_new_master() {
	local f
	[[ -n $UP_PIDFILE ]] || return 1
	for f in "$UP_PIDFILE.2" "$UP_PIDFILE"; do
		read_pidfile "$f" "$UP_PIDFILE" "$UP_OLD" || continue
		[[ $PIDFILE_PID != "$UP_OLD" ]] || continue
		UP_PID=$PIDFILE_PID
		UP_TREE=""
		up_remember
		return 0
	done
	return 1
}

# up_fail WHY: the upgrade did not complete.
up_fail() {
	log "$name: upgrade failed: $1"
	up_state=-1
}

# fault_case NAME FAULT ARGV...: one measured run.  "{PORT}" and "{PIDFILE}" in ARGV are
# replaced by the chosen port and the pid file's path.
fault_case() {
	local name=$1 fault=$2
	shift 2
	local port
	port=$(free_port) || die "no free port"
	local tag="$name.$fault"
	local pidfile=$LOG_DIR/$tag.pid
	local -a argv=("${@//\{PORT\}/$port}")
	argv=("${argv[@]//\{PIDFILE\}/$pidfile}")
	local label iv=0
	case $fault in
	none) label=none ;;
	hup) label=HUP iv=$RELOAD_HUP_MS ;;
	scale) label=TTIN/TTOU iv=$RELOAD_SCALE_MS ;;
	kill) label=KILL iv=$RELOAD_KILL_MS ;;
	upgrade)
		case $name in
		uwsgi) label=HUP ;;
		gunicorn-*) label=USR2+WINCH+TERM ;;
		*) label=USR2 ;;
		esac
		;;
	*) die "unknown fault $fault" ;;
	esac
	log "$name [$fault]: starting on $HOST:$port: ${argv[*]}"
	start_server "$tag" "${argv[@]}"
	if ! wait_ready "$port"; then
		log "$name: exited, or did not answer within ${START_TIMEOUT}s; see $LOG_DIR/$tag.log"
		stop_server
		printf '%s\t%s\t%s\t0\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$name" "$fault" "$label"
		return 0
	fi
	# Give the workers a moment: wait_ready only proves that one of them answers.
	sleep 1

	local -a cmd
	mapfile -d '' -t cmd < <(wrk_cmd "$RELOAD_CONNS" "$RELOAD_DURATION" "$port")
	"${cmd[@]}" >"$LOG_DIR/$tag.wrk" 2>&1 &
	WRK_PID=$!

	# Act while wrk runs; every 250 ms, note the PIDs in the server's tree(s).  An upgrade
	# under way is seen to its end (or its timeout) even if wrk is done first.
	local -a sigs=()
	[[ $fault == scale ]] && sigs=(TTIN TTOU)
	[[ $fault == hup ]] && sigs=(HUP)
	local sent=0 i=0 now p start next end sample=0 first=0 last=0 takeover=NA conns_killed=NA
	[[ $fault == kill ]] && conns_killed=0
	local up_state=0 old_pid="" t_sig=0 t_ready=0 t_winch=0 up_kids=""
	local -A seen=()
	nap_open
	set_now
	start=$NOW
	end=$((start + RELOAD_DURATION * 1000))
	next=$((start + iv))
	while alive "$WRK_PID" || [[ $fault == upgrade && $up_state =~ ^[1-4]$ ]]; do
		set_now
		now=$NOW
		if ((now >= sample)); then
			tree_pids "$SERVER_PID"
			for p in "${TREE_PIDS[@]}"; do seen[$p]=1; done
			if [[ -n $UP_PID ]]; then
				tree_pids "$UP_PID"
				for p in "${TREE_PIDS[@]}"; do seen[$p]=1; done
			fi
			sample=$((now + 250))
		fi
		if [[ $fault == upgrade ]]; then
			upgrade_step "$now"
		elif ((iv > 0 && now >= next && now < end)); then
			local ok=0
			if [[ $fault == kill ]]; then
				kill_worker && ok=1
			elif kill -s "${sigs[i % ${#sigs[@]}]}" "$SERVER_PID" 2>/dev/null; then
				ok=1
				i=$((i + 1))
			else
				log "$name: could not signal $SERVER_PID (gone?)"
			fi
			if ((ok)); then
				sent=$((sent + 1))
				((first)) || first=$now
				last=$now
				next=$((next + iv))
				((next > now)) || next=$((now + iv)) # fell behind: no burst to catch up
			fi
		fi
		nap 0.02
	done
	nap_close
	wait "$WRK_PID"
	WRK_PID=""
	[[ $fault == upgrade && $up_state == 0 ]] &&
		log "$name: the load ended before the upgrade was due (RELOAD_UPGRADE_AT_MS=$RELOAD_UPGRADE_AT_MS)"
	for p in $(proc_tree "$SERVER_PID"); do seen[$p]=1; done
	alive "$SERVER_PID" || log "$name: the server died during the run; see $LOG_DIR/$tag.log"
	if [[ $fault == upgrade && $name != uwsgi && $up_state == 9 ]]; then
		# The new master should have moved its pid file to FILE by now, or do it soon.
		for i in {1..30}; do
			[[ $(cat "$pidfile" 2>/dev/null) == "$SERVER_PID" ]] && break
			sleep 0.1
		done
		[[ $(cat "$pidfile" 2>/dev/null) == "$SERVER_PID" ]] ||
			log "$name: after the upgrade, $pidfile has '$(cat "$pidfile" 2>/dev/null)', not $SERVER_PID"
	fi
	if [[ $fault == upgrade && $up_state != 9 && -z $UP_PID ]] && find_new_master; then
		log "$name: the upgrade did not complete, but a new master ($UP_PID) is there: stopping it too"
	fi
	stop_up
	stop_server
	UP_PIDFILE=""
	UP_OLD=""

	local interval=NA first_ms=NA
	((first > 0)) && first_ms=$((first - start))
	((sent >= 2 && last > 0)) && interval=$(((last - first) / (sent - 1)))
	if ! parse_wrk "$LOG_DIR/$tag.wrk"; then
		log "$name: no result from wrk; see $LOG_DIR/$tag.wrk"
		printf '%s\t%s\t%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t%s\t%s\t%s\n' "$name" "$fault" \
			"$label" "$sent" "$first_ms" "$interval" "${#seen[@]}" "$takeover" "$conns_killed"
		return 0
	fi
	local rps errors secs
	rps=$(calc "$W_requests / ($W_duration_us / 1e6)" 0)
	secs=$(calc "$W_duration_us / 1e6" 2)
	errors=$((W_connect + W_read + W_write + W_timeout + W_status))
	log "$name [$fault]: sent=$sent first_ms=$first_ms interval_ms=$interval requests=$W_requests" \
		"errors=$errors takeover_ms=$takeover conns_killed=$conns_killed"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$fault" "$label" \
		"$sent" "$first_ms" "$interval" "$secs" "$W_requests" "$rps" "$W_connect" "$W_read" "$W_write" "$W_timeout" \
		"$W_status" "$errors" "${#seen[@]}" "$takeover" "$conns_killed"
}

# cases NAME "FAULTS" ARGV...: the baseline (unless BASELINE=0), then one fault_case per fault
# in RELOAD_FAULTS that NAME supports (FAULTS), if NAME is in RELOAD_SERVERS.
cases() {
	local name=$1 faults=$2 f
	shift 2
	[[ " $RELOAD_SERVERS " == *" $name "* ]] || return 0
	((BASELINE)) && fault_case "$name" none "$@"
	for f in $RELOAD_FAULTS; do
		[[ " $faults " == *" $f "* ]] && fault_case "$name" "$f" "$@"
	done
}

# ---------------------------------------------------------------------------------------
need wrk curl ss setsid timeout awk grep
[[ -n $SERVER_CPUS || -n $WRK_CPUS ]] && need taskset

log "wrk -t$WRK_THREADS -c$RELOAD_CONNS -d${RELOAD_DURATION}s; HUP every ${RELOAD_HUP_MS} ms," \
	"TTIN/TTOU every ${RELOAD_SCALE_MS} ms, a worker killed every ${RELOAD_KILL_MS} ms, upgrade at" \
	"${RELOAD_UPGRADE_AT_MS} ms; server cpus: ${SERVER_CPUS:-any}, wrk cpus: ${WRK_CPUS:-any}, logs: $LOG_DIR"
printf 'name\tfault\tsignals\tsent\tfirst_ms\tinterval_ms\tduration_s\trequests\trps\tconnect\tread\twrite\ttimeout\tnon2xx\terrors\tpids_seen\ttakeover_ms\tconns_killed\n'

GUNICORN_ARGS=(--chdir "$APPS_DIR" -b "$HOST:{PORT}" --pid "{PIDFILE}" --log-level "$RELOAD_LOG_LEVEL")
cases gunicorn-sync "hup scale upgrade kill" "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 hello_wsgi:app
cases gunicorn-gthread "hup scale upgrade kill" "$GUNICORN" "${GUNICORN_ARGS[@]}" -w 2 -k gthread --threads 4 hello_wsgi:app
# See peers.sh for why uwsgi gets "Connection: close".
cases uwsgi "hup upgrade kill" "$UWSGI" --http-socket "$HOST:{PORT}" --plugin python3 --master --processes 2 \
	--chdir "$APPS_DIR" --module hello_wsgi:application --need-app --disable-logging \
	--die-on-term --listen 1024 --add-header "Connection: close"

# corral, same load, same faults, for each worker type this build has.
for k in goroutine sync event; do
	"$CORRAL" -k "$k" --check-config demo >/dev/null 2>&1 || continue
	cases "corral-$k" "hup scale upgrade kill" "$CORRAL" -w 2 -k "$k" -b "$HOST:{PORT}" --pid "{PIDFILE}" \
		--log-level "$RELOAD_LOG_LEVEL" demo
done
log "done; logs in $LOG_DIR"
