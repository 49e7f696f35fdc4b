#!/usr/bin/env bash
# bench/profile.sh -- where the time per request goes: a perf profile and system-call counts of
# servers under a bounded wrk load, one TSV table per path (issue 21).
#
# Usage:
#   bash bench/profile.sh keep-alive > profile_keep-alive.tsv     # or pipeline, close, nginx-uwsgi
#   PROFILE_SERVERS="corral-event floor" bash bench/profile.sh close
#
# For each path the servers (PROFILE_SERVERS; default: corral-event, go-fasthttp and the floor,
# plus uWSGI on close; behind nginx the nginx-uwsgi-* cases of nginx.sh) run pinned as in
# make bench's pinned step (server on CPU 1, wrk on CPU 0; one worker or process; behind nginx
# nginx shares CPU 1 with the backend, one nginx worker).  Each is measured twice by peers.sh
# or nginx.sh, with this script as their MEASURE_HOOK around the measured wrk run:
#   1. `perf record -g` (cpu-clock, frame pointers) of the server's process tree (the backend's
#      behind nginx).  Each sample goes to one category: "syscalls (kernel)" if it was taken in
#      the kernel (split below by the system call it was in), else the innermost Go frame of its
#      call chain that names a category: syscall entry/exit on the Go side, parser (corral's
#      worker/http1 and its uwsgi parser, fasthttp's header parsing, the floor's counting),
#      response writing, handler, Go runtime (GC, malloc), scheduler (schedule, findRunnable,
#      netpoll, park/ready, channels, timers), server loop (the rest of the server's own code,
#      net and internal/poll); else runtime (other) or other.  Shown as microseconds per
#      request (the share of samples times the tree's CPU time per request in that run) and
#      the share.
#   2. `strace -c -f` of the same tree: system calls per request by name (strace slows the
#      server down a lot; counts per request do not depend on that).
# If perf cannot record (no perf, or perf_event_paranoid), the time rows are NA and only the
# strace rows are filled.
#
# stdout: a TSV table, "what" then one column per server.  Raw data (perf.data, strace
# output, wrk output) stays in $PROFILE_DIR (a fresh folder under /tmp).
# Environment (defaults): PROFILE_SERVERS (see above) PROFILE_SECONDS (4: wrk -d) PROFILE_WARMUP (1)
#   PROFILE_CPUS (1: the server's CPU) PROFILE_WRK_CPUS (0), plus those of peers.sh/nginx.sh.
set -uo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- hook mode: called by lib.sh's measure_hook as  profile.sh start|stop NAME PID [WRK_OUT] ---
if [[ ${1:-} == start || ${1:-} == stop ]]; then
	source "$BENCH/lib.sh"
	what=$1 name=$2 pid=$3
	f=$PROFILE_DIR/$name.$PROFILE_TOOL
	if [[ $what == start ]]; then
		tree_pids "$pid"
		case $PROFILE_TOOL in
		perf)
			pids=$(
				IFS=,
				echo "${TREE_PIDS[*]}"
			)
			setsid perf record -q -g -p "$pids" -o "$f.data" >"$f.log" 2>&1 &
			;;
		strace)
			args=()
			for p in "${TREE_PIDS[@]}"; do args+=(-p "$p"); done
			setsid strace -c -f -qq -o "$f" "${args[@]}" >"$f.log" 2>&1 &
			;;
		esac
		echo $! >"$f.pid"
		sleep 0.5 # let it attach before the load starts
	else
		read -r tpid <"$f.pid"
		kill -INT "$tpid" 2>/dev/null
		for _ in $(seq 1 200); do [[ -e /proc/$tpid ]] || break; sleep 0.1; done
		cp "$4" "$f.wrk" 2>/dev/null
	fi
	exit 0
fi

# --- main ---
source "$BENCH/lib.sh"
path=${1:?usage: profile.sh keep-alive|pipeline|close|nginx-uwsgi}
PROFILE_DIR=${PROFILE_DIR:-$(mktemp -d /tmp/corral-profile.XXXXXX)}
export PROFILE_DIR
export SERVER_CPUS=${PROFILE_CPUS:-1} WRK_CPUS=${PROFILE_WRK_CPUS:-0}
export WRK_DURATION=${PROFILE_SECONDS:-4} WARMUP=${PROFILE_WARMUP:-1}
export CORRAL_WORKERS=1 UWSGI_PROCESSES=1 BACKEND_WORKERS=1 NGINX_WORKERS=1 NGINX_CPUS=$SERVER_CPUS
export MEASURE_HOOK=$BENCH/profile.sh
case $path in
keep-alive) script=$BENCH/wrk_report.lua servers=${PROFILE_SERVERS:-corral-event go-fasthttp floor} ;;
pipeline) script=$BENCH/pipeline.lua servers=${PROFILE_SERVERS:-corral-event go-fasthttp floor} ;;
close) script=$BENCH/close.lua servers=${PROFILE_SERVERS:-corral-event go-fasthttp uwsgi floor} ;;
nginx-uwsgi) script="" servers=${PROFILE_SERVERS:-nginx-uwsgi-corral-event nginx-uwsgi-uwsgi nginx-uwsgi-floor} ;;
*) die "profile.sh: unknown path $path (keep-alive, pipeline, close, nginx-uwsgi)" ;;
esac
need wrk strace
perf_ok=1
if ! perf record -q -o "$PROFILE_DIR/probe.data" -- true >/dev/null 2>&1; then
	log "perf cannot record here (install linux-perf; perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null)): strace counts only"
	perf_ok=0
fi

# run TOOL: measure every server once with TOOL (perf, strace) as the hook; the TSV to TOOL.tsv.
run() {
	export PROFILE_TOOL=$1
	local s peers="" corral="" cases=""
	for s in $servers; do
		case $s in
		corral-*) corral+=" $s" ;;
		nginx-*) cases+=" $s" ;;
		*) peers+=" $s" ;; # peers.sh with an empty PEERS runs its defaults: "none" runs none

		esac
	done
	if [[ -n $cases ]]; then
		CASES=${cases# } bash "$BENCH/nginx.sh" >"$PROFILE_DIR/$1.tsv"
	else
		WRK_SCRIPT=$script PEERS=${peers:-none} CORRAL_PEERS=${corral:-none} EXTRA_PEERS=$BENCH/corral_peers.sh \
			bash "$BENCH/peers.sh" >"$PROFILE_DIR/$1.tsv"
	fi
}
((perf_ok)) && run perf
run strace

# breakdown NAME: "key<TAB>value" lines for one server.
breakdown() {
	local n=$1 cpu="NA" rps="NA"
	read -r rps cpu < <(awk -F'\t' -v n="$n" 'NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; next}
		$1 == n {print $c["rps"], $c["cpu_us_per_req"]}' "$PROFILE_DIR/perf.tsv" 2>/dev/null)
	printf 'rps (perf run)\t%s\ncpu_us_per_req (perf run)\t%s\n' "${rps:-NA}" "${cpu:-NA}"
	if [[ -s $PROFILE_DIR/$n.perf.data ]]; then
		perf script -i "$PROFILE_DIR/$n.perf.data" 2>/dev/null | awk -v cpu="${cpu:-NA}" -f "$BENCH/profile_classify.awk"
	fi
	if [[ -s $PROFILE_DIR/$n.strace ]] && parse_wrk "$PROFILE_DIR/$n.strace.wrk" && ((W_requests > 0)); then
		awk -v req="$W_requests" '
			$1 ~ /^[0-9.]+$/ && $NF != "total" {calls[$NF] = $4; total += $4}
			END {
				printf "syscalls/req (strace)\t%.2f\n", total / req
				n = 0; for (s in calls) key[++n] = s
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (calls[key[j]] > calls[key[i]]) {t = key[i]; key[i] = key[j]; key[j] = t}
				for (i = 1; i <= n; i++) if (calls[key[i]] / req >= 0.005) printf "  %s /req\t%.2f\n", key[i], calls[key[i]] / req
			}' "$PROFILE_DIR/$n.strace"
	else
		printf 'syscalls/req (strace)\tNA\n'
	fi
}

for s in $servers; do breakdown "$s" >"$PROFILE_DIR/$s.kv"; done
# Join the servers' key/value lists into one table: the keys in the order first seen.
# shellcheck disable=SC2046  # one file per server
awk -F'\t' -v names="$servers" '
	BEGIN {m = split(names, nm, " ")}
	FNR == 1 {f++}
	# the rows in four groups (totals and categories, kernel by call, strace total, strace by
	# call), each in the order its keys were first seen
	function group(key) {return key ~ /^  kernel: / ? 2 : key ~ /^syscalls\/req/ ? 3 : key ~ / \/req$/ ? 4 : 1}
	{if (!($1 in seen)) {seen[$1] = 1; g = group($1); order[g, ++cnt[g]] = $1}; v[f, $1] = $2}
	END {
		h = "what"; for (j = 1; j <= m; j++) h = h "\t" nm[j]; print h
		k = 0; for (g = 1; g <= 4; g++) for (i = 1; i <= cnt[g]; i++) row[++k] = order[g, i]
		for (i = 1; i <= k; i++) {
			line = row[i]
			for (j = 1; j <= m; j++) line = line "\t" (((j, row[i]) in v) ? v[j, row[i]] : "-")
			print line
		}
	}' $(for s in $servers; do echo "$PROFILE_DIR/$s.kv"; done)
log "profile of $path done; raw data in $PROFILE_DIR"
